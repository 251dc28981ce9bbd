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
AWX_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


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


def test_surveys_are_valid_awx_specs():
    for name, text in committed().items():
        survey = json.loads(text)
        assert set(survey) == {"name", "description", "spec"} and survey["spec"], name
        variables = [q["variable"] for q in survey["spec"]]
        assert len(variables) == len(set(variables)), name
        for item in survey["spec"]:
            where = "%s: %s" % (name, item["variable"])
            assert item["type"] in AWX_TYPES, where
            assert item["question_name"] and item["question_description"], where
            assert isinstance(item["required"], bool), where
            if item["type"] in ("multiplechoice", "multiselect"):
                choices = item["choices"].split("\n")
                assert len(choices) >= 2, where
                for default in filter(None, item["default"].split("\n")):
                    assert default in choices, where
            if item["type"] == "integer":
                assert item["default"] == "" or isinstance(item["default"], int), where
            if item["type"] == "float":
                assert item["default"] == "" or isinstance(item["default"], (int, float)), where


def test_role_surveys_cover_every_role_option_a_survey_can_carry():
    for role in ROLES:
        with open(os.path.join(SURVEYS, generate_surveys.survey_of_role(role))) as handle:
            questions = {q["variable"]: q for q in json.load(handle)["spec"]}
        defaults_file = os.path.join(REPO, "roles", role, "defaults", "main.yml")
        with open(defaults_file) as handle:
            defaults = yaml.safe_load(handle) or {}
        for name, option in specs(role)["main"]["options"].items():
            default = defaults.get(name, option.get("default", ""))
            carried = not (name == "sentry_selfhosted_dir" or option["type"] == "dict"
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
