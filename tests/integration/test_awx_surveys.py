# SPDX-License-Identifier: GPL-3.0-or-later
"""AWX surveys stay in step with the argument specs; every role is documented from the installed copy."""

import importlib.util
import json
import os
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
ROLES = sorted(d for d in os.listdir(os.path.join(REPO, "roles"))
               if os.path.isdir(os.path.join(REPO, "roles", d)))


def specs(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]


def committed():
    result = {}
    for name in sorted(os.listdir(SURVEYS)):
        with open(os.path.join(SURVEYS, name)) as handle:
            result[name] = handle.read()
    return result


def test_committed_surveys_match_the_generator(tmp_path):
    proc = subprocess.run([sys.executable, GENERATOR, "--output", str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    fresh = {p.name: p.read_text() for p in sorted(tmp_path.iterdir())}
    assert fresh == committed(), "docs/awx/surveys is stale: run python docs/awx/generate_surveys.py"


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


def test_role_surveys_cover_every_role_option_a_survey_can_carry():
    for role in ROLES:
        with open(os.path.join(SURVEYS, generate_surveys.survey_of_role(role))) as handle:
            questions = {q["variable"]: q for q in json.load(handle)["spec"]}
        defaults_file = os.path.join(REPO, "roles", role, "defaults", "main.yml")
        with open(defaults_file) as handle:
            defaults = yaml.safe_load(handle) or {}
        for name, option in specs(role)["main"]["options"].items():
            default = defaults.get(name, option.get("default", ""))
            carried = not (name in generate_surveys.INVENTORY_ONLY or option["type"] == "dict"
                           or (option["type"] == "list" and not option.get("choices"))
                           or "{{" in str(default))
            assert (name in questions) == carried, (role, name)
            if carried and option.get("no_log"):
                assert questions[name]["type"] == "password", name
            if carried and option["type"] == "bool":
                assert questions[name]["choices"] == "true\nfalse", name


def test_secrets_are_password_questions():
    secret_words = ("url", "token", "password", "secret")
    for role in ROLES:
        for name, option in specs(role)["main"]["options"].items():
            if name.rsplit("_", 1)[-1] in secret_words:
                assert option.get("no_log") is True, "%s: %s should be no_log" % (role, name)
    if "memory_alerts" in ROLES:
        with open(os.path.join(SURVEYS, "site.json")) as handle:
            questions = {q["variable"]: q for q in json.load(handle)["spec"]}
        assert questions["memory_alerts_webhook_url"]["type"] == "password"


@pytest.mark.parametrize("role", ROLES)
def test_survey_defaults_pass_the_role_argument_spec(role, ansible_env, tmp_path):
    """What a survey sends (bools as "true"/"false", numbers, text) is accepted by the role's validation."""
    with open(os.path.join(SURVEYS, generate_surveys.survey_of_role(role))) as handle:
        answers = {q["variable"]: q["default"] for q in json.load(handle)["spec"]
                   if q["default"] != "" and q["variable"] in specs(role)["main"]["options"]}
    assert answers, role
    playbook = tmp_path / "validate.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Validate survey answers", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Validate", "ansible.builtin.validate_argument_spec": {
            "argument_spec": specs(role)["main"]["options"], "provided_arguments": answers}}]}]))
    proc = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                          env=dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="default"), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
