# SPDX-License-Identifier: GPL-3.0-or-later
"""What an AWX operator launches: surveys that ask per launch and leave the inventory alone, the inventory
example that carries everything per host, playbooks that change hosts only when told which, and site's first
check of the managed hosts' Python. Every role is documented from the installed copy."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tool

GENERATOR = os.path.join(REPO, "docs", "awx", "generate_surveys.py")
_SPEC = importlib.util.spec_from_file_location("generate_surveys", GENERATOR)
generate_surveys = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generate_surveys)
SURVEYS = os.path.join(REPO, "docs", "awx", "surveys")
EXAMPLE = os.path.join(REPO, "docs", "awx", "group_vars", "sentry.yml")
INVENTORY = os.path.join(REPO, "hacking", "localhost.yml")
# host_program's variables are set by the roles that include it, never by the inventory.
ROLES = sorted(d for d in os.listdir(os.path.join(REPO, "roles"))
               if os.path.isdir(os.path.join(REPO, "roles", d)) and d != "host_program")
# The playbooks that change hosts, and the variable naming their hosts.
CHANGING = {"site": "site_hosts", "upgrade": "upgrade_hosts", "restart": "restart_hosts"}


def specs(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]


def committed():
    result = {}
    for name in sorted(os.listdir(SURVEYS)):
        with open(os.path.join(SURVEYS, name)) as handle:
            result[name] = handle.read()
    return result


def survey(playbook):
    with open(os.path.join(SURVEYS, playbook + ".json")) as handle:
        return json.load(handle)


def plays(playbook):
    with open(os.path.join(REPO, "playbooks", playbook + ".yml")) as handle:
        return yaml.safe_load(handle)


def role_defaults(role):
    """A role's options with the default the role uses (defaults/main.yml, else the spec's, else null)."""
    with open(os.path.join(REPO, "roles", role, "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle) or {}
    return dict((name, defaults.get(name, option.get("default"))) for name, option in specs(role)["main"]["options"].items())


def example():
    """The inventory example's variables, each commented line `# name: value` taken as YAML."""
    values = {}
    with open(EXAMPLE) as handle:
        for line in handle:
            if re.match(r"^# [a-z][a-z0-9_]*: ", line):
                values.update(yaml.safe_load(line[2:]))
    return values


def run_playbook(ansible_env, playbook, *extra, callback="json", inventory=INVENTORY):
    proc = subprocess.run([tool("ansible-playbook"), "-i", inventory, "sentry_selfhosted.memory.%s" % playbook] + list(extra),
                          env=dict(ansible_env, ANSIBLE_STDOUT_CALLBACK=callback), capture_output=True, text=True, check=False)
    data = json.loads(proc.stdout) if callback == "json" and proc.stdout.strip().startswith("{") else None
    return proc.returncode, data, proc.stdout + proc.stderr


def test_committed_surveys_match_the_generator(tmp_path):
    proc = subprocess.run([sys.executable, GENERATOR, "--output", str(tmp_path / "surveys"),
                           "--group-vars", str(tmp_path / "sentry.yml")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    fresh = {p.name: p.read_text() for p in sorted((tmp_path / "surveys").iterdir())}
    assert fresh == committed(), "docs/awx/surveys is stale: run python docs/awx/generate_surveys.py"
    with open(EXAMPLE) as handle:
        assert (tmp_path / "sentry.yml").read_text() == handle.read(), \
            "docs/awx/group_vars/sentry.yml is stale: run python docs/awx/generate_surveys.py"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_typed_and_described(role):
    for entry, spec in specs(role).items():
        assert spec.get("short_description"), (role, entry)
        for name, option in (spec.get("options") or {}).items():
            assert option.get("type"), "%s %s: %s has no type" % (role, entry, name)
            assert option.get("description"), "%s %s: %s has no description" % (role, entry, name)
            if option["type"] == "list":
                assert option.get("elements"), "%s: list %s has no elements type" % (role, name)


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_documents_the_installed_role(role, ansible_env):
    proc = subprocess.run([tool("ansible-doc"), "-t", "role", "-j", "sentry_selfhosted.memory.%s" % role],
                          env=ansible_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["sentry_selfhosted.memory.%s" % role]
    assert doc["path"].startswith(ansible_env["ANSIBLE_COLLECTIONS_PATH"].split(":")[0]), doc["path"]
    documented = set(doc["entry_points"]["main"]["options"])
    assert documented == set(specs(role)["main"]["options"])


# What AWX's survey_spec endpoint checks before it saves a survey, after
# JobTemplateSurveySpec._validate_spec_data in ansible/awx awx/api/views/__init__.py
# and SURVEY_TYPE_MAPPING in awx/main/constants.py. Where AWX is lenient (it tests a
# default choice as a substring of the choices) this is stricter.
AWX_DEFAULT_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                     "integer": int, "float": (float, int)}


def awx_survey_errors(survey):
    """Why AWX would refuse the survey spec (an empty list when it accepts it)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            errors.append("%s missing or not a %s" % (field, kind.__name__))
    if errors:
        return errors
    if not survey["spec"]:
        errors.append("spec has no questions")
    variables = set()
    for idx, item in enumerate(survey["spec"]):
        where = "question %d (%s)" % (idx, item.get("variable") if isinstance(item, dict) else item)
        if not isinstance(item, dict):
            errors.append("%s is not an object" % where)
            continue
        for field in ("type", "question_name", "variable", "required"):
            kind = bool if field == "required" else str
            if not isinstance(item.get(field), kind):
                errors.append("%s: %s missing or not a %s" % (where, field, kind.__name__))
        if errors:
            continue
        if item["variable"] in variables:
            errors.append("%s: variable duplicated" % where)
        variables.add(item["variable"])
        qtype = item["type"]
        if qtype not in AWX_DEFAULT_TYPES:
            errors.append("%s: type %s is not one of AWX's" % (where, qtype))
            continue
        default = item.get("default", "")
        # bool is an int to isinstance(); AWX would take it, an integer question should not.
        if default != "" and (not isinstance(default, AWX_DEFAULT_TYPES[qtype]) or isinstance(default, bool)):
            errors.append("%s: default %r is not of type %s" % (where, default, qtype))
        for key in ("min", "max"):
            if key in item and item[key] is not None and not isinstance(item[key], int):
                errors.append("%s: %s %r is not an integer or null" % (where, key, item[key]))
        if qtype in ("multiplechoice", "multiselect"):
            if not isinstance(item.get("choices"), str) or not item["choices"].strip():
                errors.append("%s: %s without choices" % (where, qtype))
                continue
            choices = [c for c in item["choices"].splitlines() if c.strip()]
            defaults = [d for d in str(default).splitlines() if d.strip()]
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append("%s: a multiple choice question has more than one default" % where)
            for value in defaults:
                if value not in choices:
                    errors.append("%s: default %r is not one of the choices" % (where, value))
        if isinstance(default, str) and default.startswith("$encrypted$"):
            errors.append("%s: $encrypted$ is reserved" % where)
    return errors


def label_errors(survey):
    """Questions whose label is not for people: empty, the variable itself, or a raw foo_bar name."""
    return ["%s: label %r" % (q["variable"], q["question_name"]) for q in survey["spec"]
            if not q["question_name"].strip() or q["question_name"] == q["variable"] or "_" in q["question_name"]]


@pytest.mark.parametrize("name", sorted(os.listdir(SURVEYS)))
def test_shipped_surveys_pass_awx_checks(name):
    with open(os.path.join(SURVEYS, name)) as handle:
        survey = json.load(handle)
    assert awx_survey_errors(survey) == [], name
    assert label_errors(survey) == [], name
    for item in survey["spec"]:
        assert item["question_description"], (name, item["variable"])


def test_awx_checks_refuse_what_awx_refuses():
    """The checks above fail on the shapes AWX answers with HTTP 400 (the old surveys had the first)."""
    good = {"question_name": "Swap: Priority", "question_description": "d", "variable": "swap_priority",
            "required": False, "min": None, "max": None, "choices": "", "default": 5, "type": "integer"}
    assert awx_survey_errors({"name": "n", "description": "d", "spec": [good]}) == []
    bad = [
        dict(good, min="", max=""),
        dict(good, default="5"),
        dict(good, type="bool"),
        dict(good, required="false"),
        dict(good, type="float", default="0.5"),
        dict(good, type="multiplechoice", choices="", default=""),
        dict(good, type="multiplechoice", choices="a\nb", default="c"),
        dict(good, type="multiplechoice", choices="a\nb", default="a\nb"),
    ]
    for item in bad:
        assert awx_survey_errors({"name": "n", "description": "d", "spec": [item]}), item
    assert awx_survey_errors({"name": "n", "description": "d", "spec": [good, good]})
    assert awx_survey_errors({"name": "n", "spec": [good]})
    assert awx_survey_errors({"name": "n", "description": "d", "spec": []})
    assert label_errors({"spec": [dict(good, question_name="swap_priority")]})
    assert label_errors({"spec": [dict(good, question_name="Swap priority_x")]})


# ---- Surveys: what a launch decides, nothing that overrides the inventory ----

def test_site_survey_asks_what_a_launch_decides():
    """Which hosts, which parts, how many at once: at most 15 questions, at most 2 preset."""
    questions = survey("site")["spec"]
    assert len(questions) <= 15, [q["variable"] for q in questions]
    assert len([q for q in questions if q["default"] != ""]) <= 2, [q["variable"] for q in questions if q["default"] != ""]
    text = open(os.path.join(REPO, "playbooks", "site.yml")).read()
    switches = sorted(set(re.findall(r"\b(site_(?:swap|compose_limits|relay_health|memory_alerts|restart_timer)) \| default", text)))
    assert len(switches) == 5
    assert set(switches + ["site_hosts"]) <= set(q["variable"] for q in questions)


@pytest.mark.parametrize("name", sorted(os.listdir(SURVEYS)))
def test_no_survey_presets_what_the_inventory_may_set(name):
    """AWX sends a preset as an extra variable, which beats the inventory: only a play keyword (which
    Ansible reads before any host, so from no inventory) may be preset."""
    playbook = name[:-len(".json")]
    keywords = set()
    for play in plays(playbook):
        for key in ("serial", "max_fail_percentage"):
            # Every name the keyword's expression uses (site_serial is one of several there).
            keywords.update(re.findall(r"\b([a-z]\w*)\b", str(play.get(key, ""))))
    inventory = set(example())
    for role in ROLES:
        inventory.update(specs(role)["main"]["options"])
    for question in survey(playbook)["spec"]:
        if question["default"] != "":
            assert question["variable"] in keywords and question["variable"] not in inventory, question["variable"]


@pytest.mark.parametrize("name", sorted(os.listdir(SURVEYS)))
def test_an_empty_answer_means_not_given(name):
    """AWX may send a question left empty as an empty string: a question that is not text is required, and
    the playbook reads an empty optional answer as not given (default(..., true), or a role default of "")."""
    playbook = name[:-len(".json")]
    text = open(os.path.join(REPO, "playbooks", playbook + ".yml")).read()
    defaults = {}
    for role in ROLES:
        defaults.update(role_defaults(role))
    for question in survey(playbook)["spec"]:
        if question["type"] != "text":
            assert question["required"], question["variable"]
        elif not question["required"]:
            empty_is_default = defaults.get(question["variable"], None) == ""
            assert empty_is_default or re.search(r"\b%s \| default\([^)]*, true\)" % question["variable"], text), \
                question["variable"]


def test_the_generator_refuses_a_question_that_would_override_the_inventory():
    with pytest.raises(ValueError, match="override the inventory"):
        generate_surveys.question("swap_file_size", {"type": "str", "default": "auto", "label": "Swap size", "description": "d"})
    with pytest.raises(ValueError, match="optional bool"):
        generate_surveys.question("swap_fstab", {"type": "bool", "required": False, "label": "Fstab", "description": "d"})
    serial = generate_surveys.question("site_serial", {"type": "str", "default": "25%", "required": True, "label": "At once",
                                                       "description": "d"})
    assert serial["default"] == "25%" and serial["type"] == "text"


@pytest.mark.parametrize("playbook", sorted(os.path.splitext(n)[0] for n in os.listdir(SURVEYS)))
def test_every_survey_asks_which_hosts(playbook):
    """A required question, no preset, for the variable the playbook's plays act on."""
    variable = "%s_hosts" % playbook
    questions = dict((q["variable"], q) for q in survey(playbook)["spec"])
    assert variable in questions
    assert questions[variable]["required"] and questions[variable]["default"] == ""
    assert any(variable in str(play["hosts"]) for play in plays(playbook))


def test_survey_answers_of_role_options_pass_the_role_argument_spec(ansible_env, tmp_path):
    """Each answer a survey offers for a role option (every choice; empty and some text) is one the role takes."""
    cases = []
    for name in sorted(os.listdir(SURVEYS)):
        for question in survey(name[:-len(".json")])["spec"]:
            for role in ROLES:
                options = specs(role)["main"]["options"]
                if question["variable"] in options:
                    answers = question["choices"].splitlines() if question["choices"] else ["", "26.8.0"]
                    cases += [(role, {question["variable"]: value}) for value in answers]
    assert cases
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Validate survey answers", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Validate %s %s" % (role, answer), "ansible.builtin.validate_argument_spec": {
            "argument_spec": specs(role)["main"]["options"], "provided_arguments": answer}} for role, answer in cases]}]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                          env=dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="default"), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_secrets_stay_out_of_the_surveys():
    secret_words = ("url", "token", "password", "secret")
    secrets = set()
    for role in ROLES:
        for name, option in specs(role)["main"]["options"].items():
            if name.rsplit("_", 1)[-1] in secret_words:
                assert option.get("no_log") is True, "%s: %s should be no_log" % (role, name)
            if option.get("no_log"):
                secrets.add(name)
    assert "memory_alerts_webhook_url" in secrets
    for name in sorted(os.listdir(SURVEYS)):
        asked = set(q["variable"] for q in survey(name[:-len(".json")])["spec"])
        assert not asked & secrets, name


# ---- The inventory example: everything host-specific ----

def test_the_inventory_example_lists_every_variable_with_its_default():
    """Uncommented, the example is the collection's defaults: every role option (bar those a survey asks per
    launch) and the playbook variables that the inventory may set."""
    asked = set(q["variable"] for name in os.listdir(SURVEYS) for q in survey(name[:-len(".json")])["spec"])
    wanted = {}
    for role in ROLES:
        wanted.update((name, value) for name, value in role_defaults(role).items() if name not in asked)
    values = example()
    assert dict((name, values.get(name, "missing")) for name in wanted) == wanted
    extra = set(values) - set(wanted)
    assert extra == {"audit_containers", "audit_compose_project", "restart_reload_nginx", "restart_timeout"}, extra
    assert values["restart_timeout"] == 120 and values["restart_reload_nginx"] is True
    # Every line is commented out: copied as it is, the file sets nothing.
    with open(EXAMPLE) as handle:
        assert yaml.safe_load(handle) is None


@pytest.mark.parametrize("role", ROLES)
def test_the_inventory_example_passes_the_role_argument_spec(role, ansible_env, tmp_path):
    """The example's values, uncommented into a host's variables, are accepted by the role's validation."""
    values = example()
    answers = dict((name, values[name]) for name in specs(role)["main"]["options"] if values.get(name) is not None)
    assert answers, role
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Validate the example", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Validate", "ansible.builtin.validate_argument_spec": {
            "argument_spec": specs(role)["main"]["options"], "provided_arguments": answers}}]}]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                          env=dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="default"), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


# ---- Playbooks that change hosts act only on hosts they are given ----

@pytest.mark.parametrize("playbook", sorted(CHANGING))
def test_no_play_that_changes_hosts_defaults_to_localhost(playbook):
    """In AWX localhost is the execution environment's container. A play on other hosts than those named may only check."""
    for play in plays(playbook):
        if CHANGING[playbook] in str(play["hosts"]):
            assert "localhost" not in str(play["hosts"]), play["name"]
        else:
            modules = set(key for task in play.get("tasks", []) for key in task
                          if key not in ("name", "when", "vars", "run_once"))
            assert modules <= {"ansible.builtin.fail", "ansible.builtin.assert"}, play["name"]
            assert not any(play.get(key) for key in ("roles", "pre_tasks", "post_tasks", "handlers")), play["name"]


# Inventories the target check must handle: none (implicit localhost), this machine, a fleet under a --limit
# (an AWX template's Limit); and the variable given empty (an empty survey answer).
TARGET_CASES = {
    "no-inventory": ("all:\n  hosts: {}\n", [], "localhost"),
    "localhost": (None, [], "localhost"),
    "empty": (None, ["-e", "VARIABLE="], "localhost"),
    "limit": ("all:\n  hosts:\n    sentry-1:\n      ansible_host: 192.0.2.1\n    sentry-2:\n      ansible_host: 192.0.2.2\n",
              ["--limit", "sentry-2"], "sentry-2"),
}


@pytest.mark.parametrize("case", sorted(TARGET_CASES))
@pytest.mark.parametrize("playbook", ["upgrade", "restart"])
def test_without_hosts_the_playbook_fails_saying_how_to_name_them(ansible_env, tmp_path, playbook, case):
    variable = CHANGING[playbook]
    text, extra, host = TARGET_CASES[case]
    inventory = INVENTORY
    if text is not None:
        inventory = str(tmp_path / "inventory.yml")
        (tmp_path / "inventory.yml").write_text(text)
    rc, data, output = run_playbook(ansible_env, playbook, *[arg.replace("VARIABLE", variable) for arg in extra],
                                    inventory=inventory)
    assert rc != 0, output
    assert len(data["plays"]) == 1, "a play after the check ran"
    results = [t["hosts"] for t in data["plays"][0]["tasks"]]
    assert len(results) == 1 and list(results[0]) == [host], results
    result = results[0][host]
    assert result.get("failed") and "name them with -e %s=GROUP" % variable in result.get("msg", ""), result
    # The check touched no host (192.0.2.0/24 reaches nothing; a connection would have been unreachable).
    assert not data["stats"][host].get("unreachable"), data["stats"]


# ---- site checks the managed host's Python before anything ----

FAKE_PYTHONS = {
    # What ansible-core's module wrapper answers on a Python it does not support.
    "too-old": '#!/bin/sh\necho \'{"failed": true, "msg": "ansible-core requires a minimum of Python version 3.8. '
               'Current version: 3.7.17"}\'\nexit 1\n',
    # A Python 2 (or none): the wrapper does not even parse.
    "no-json": '#!/bin/sh\necho \'  File "AnsiballZ_host_check.py", line 1\' >&2\necho "SyntaxError: invalid syntax" >&2\nexit 1\n',
}


@pytest.mark.parametrize("kind", sorted(FAKE_PYTHONS))
def test_site_stops_first_on_a_python_the_modules_cannot_run_on(ansible_env, tmp_path, kind):
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHONS[kind])
    python.chmod(0o755)
    rc, data, output = run_playbook(ansible_env, "site", "-e", "ansible_python_interpreter=%s" % python,
                                    "-e", "sentry_selfhosted_dir=%s" % tmp_path, "--check")
    assert rc != 0, output
    version = subprocess.run([tool("ansible"), "--version"], capture_output=True, text=True, check=True).stdout
    minimum = "3.8" if re.search(r"core 2\.19\.", version) else "3.9"
    # The first play only checks that site_hosts matched a host (on the controller).
    ran = [(t["task"]["name"], t["hosts"]["localhost"]) for play in data["plays"][1:] for t in play["tasks"]]
    assert [name for name, dummy in ran] == ["Look for the checkout, systemd, the Docker CLI and the Python that runs modules",
                                             "Check the managed host's Python"], ran
    message = ran[-1][1]["msg"]
    assert ran[-1][1]["failed"] and "needs Python %s or later on the managed host" % minimum in message, message
    assert "ansible_python_interpreter" in message
