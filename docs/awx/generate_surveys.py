#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write AWX/Tower survey specs (docs/awx/surveys/*.json) from the collection's own specs.

AWX does not read meta/argument_specs.yml, so the surveys are generated:

- site.json (job templates "site" and "site (check)"): every role's
  meta/argument_specs.yml, in the order the site playbook runs the roles,
  after the playbook's own switches (site_swap, ..., site_serial).
- audit.json, restart.json: the playbook's PREFIX_NAME variables that feed a
  module option NAME (memory_info, relay_restart), typed and described by the
  module's DOCUMENTATION, defaults as the playbook has them.

What a survey cannot carry is left out (set it in the inventory or the job
template's extra variables instead): dict options and list options without
choices (an AWX answer is a string; the roles take the variable as it is),
defaults computed from other variables (defaults/main.yml gives the
default a role really uses), and the inventory variable
sentry_selfhosted_dir. Options marked no_log become password questions.

    python docs/awx/generate_surveys.py            # rewrite docs/awx/surveys/
    python docs/awx/generate_surveys.py --output DIR
"""

import argparse
import ast
import json
import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SURVEYS = os.path.join(REPO, "docs", "awx", "surveys")

# The playbook whose survey carries each role's variables, in the order the playbook applies the roles.
SITE_ORDER = ["swap", "compose_limits", "relay_health", "memory_alerts", "restart_timer"]
ROLE_PLAYBOOKS = {"site": SITE_ORDER, "upgrade": ["upgrade"]}
# Per-host, set in the inventory: a survey answer would give every host the same checkout.
INVENTORY_ONLY = {"sentry_selfhosted_dir", "sentry_selfhosted_docker", "sentry_selfhosted_peaks_file"}
# Playbook surveys: playbook -> (variable prefix, module whose options the variables feed).
PLAYBOOKS = {
    "audit": ("audit", "memory_info"),
    "restart": ("restart", "relay_restart"),
}
# Playbook variables that feed no module option (play keywords), with their own spec.
PLAY_VARIABLES = {
    "restart_serial": {
        "type": "int",
        "default": 1,
        "label": "Hosts restarted at once",
        "description": "How many hosts restart at once (the play's serial); one failed host stops the roll-out.",
    },
    "site_swap": {"type": "bool", "default": True, "label": "Run the swap role",
                  "description": "Run the swap role (tag swap)."},
    "site_compose_limits": {"type": "bool", "default": True, "label": "Run the compose limits role",
                            "description": "Run the compose_limits role (tag compose_limits)."},
    "site_relay_health": {"type": "bool", "default": True, "label": "Run the relay health role",
                          "description": "Run the relay_health role (tag relay_health)."},
    "site_memory_alerts": {"type": "bool", "default": True, "label": "Run the memory alerts role",
                           "description": "Run the memory_alerts role (tag memory_alerts)."},
    "site_restart_timer": {"type": "bool", "default": True, "label": "Run the restart timer role",
                           "description": "Run the restart_timer role (tag restart_timer)."},
    "site_serial": {
        "type": "str",
        "default": "25%",
        "label": "Hosts at once while services restart",
        "description": "How many hosts at once (a number or a percentage) in the play that recreates and restarts services.",
    },
    "site_max_fail_percentage": {
        "type": "int",
        "default": 0,
        "label": "Failed hosts that stop the roll-out (percent)",
        "description": "Stop the roll-out when more than this percentage of a batch fails (0: at the first failed host).",
    },
}
# Words of variable names as a label says them (units spelt out, acronyms in capitals).
LABEL_WORDS = {
    "mb": "(MiB)", "ms": "(milliseconds)", "sec": "(seconds)", "minutes": "(minutes)", "hours": "(hours)",
    "cli": "CLI", "url": "URL", "dir": "directory", "fstab": "fstab", "vfs": "VFS", "ref": "Git ref",
    "nginx": "nginx", "relay": "Relay", "docker": "Docker",
}
# The part of the collection a variable belongs to, by prefix, as a label names it.
LABEL_PARTS = {
    "swap": "Swap", "compose_limits": "Limits", "relay_health": "Relay health", "memory_alerts": "Alerts",
    "restart_timer": "Restart timer", "upgrade": "Upgrade", "audit": "Audit", "restart": "Restart",
    "sentry_selfhosted": "Every part",
}
MARKUP = re.compile(r"\b[CVOIBMLU]\(([^)]*)\)")


def plain(description):
    """One line of text from an Ansible description (string or list), markup removed."""
    if isinstance(description, list):
        description = " ".join(description)
    return MARKUP.sub(r"\1", str(description or "")).strip()


def label(variable, option):
    """A short human label for a question: the option's own label, else its name in words, sentence case.

    The name (not the description) gives the label because descriptions are
    sentences with markup; the description is the question's help text."""
    if option.get("label"):
        return option["label"]
    prefix = max((p for p in LABEL_PARTS if variable.startswith(p + "_")), key=len, default="")
    words = [LABEL_WORDS.get(word, word) for word in variable[len(prefix):].strip("_").split("_")]
    text = " ".join(words)
    text = text[:1].upper() + text[1:]
    return "%s: %s" % (LABEL_PARTS[prefix], text) if prefix else text


def answer(value):
    """A value as an AWX text or choice answer (AWX answers are strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def question(variable, option, required=False, comma_list=False):
    """One AWX survey question for an option, or None when a survey cannot carry it.

    comma_list: the variable feeds a module's list option, which splits a comma-separated string."""
    kind = option.get("type", "str")
    default = option.get("default")
    choices = option.get("choices")
    if variable in INVENTORY_ONLY or (isinstance(default, str) and "{{" in default):
        return None
    if kind == "dict" or (kind == "list" and not choices and not comma_list):
        return None
    item = {
        "question_name": label(variable, option),
        "question_description": plain(option.get("description")),
        "variable": variable,
        "required": bool(option.get("required", required)),
        # AWX refuses a min or max that is not an integer or null.
        "min": None,
        "max": None,
        "choices": "",
        "default": "",
    }
    if option.get("no_log"):
        item.update(type="password", default=answer(default))
    elif kind == "list" and not choices:
        item.update(type="text", default=",".join(answer(c) for c in default or []),
                    question_description=item["question_description"] + " Comma-separated.")
    elif kind == "list":
        item.update(type="multiselect", choices="\n".join(answer(c) for c in choices),
                    default="\n".join(answer(c) for c in default or []))
    elif kind == "bool":
        item.update(type="multiplechoice", choices="true\nfalse", default=answer(default))
    elif choices:
        item.update(type="multiplechoice", choices="\n".join(answer(c) for c in choices), default=answer(default))
    elif kind == "int":
        item.update(type="integer", default=default if isinstance(default, int) else "")
    elif kind == "float":
        item.update(type="float", default=default if isinstance(default, (int, float)) else "")
    else:
        item.update(type="text", default=answer(default))
    return item


def survey(name, description, questions):
    return {"name": name, "description": description, "spec": [q for q in questions if q is not None]}


def role_names(playbook="site"):
    """The roles whose variables the playbook's survey carries; every role belongs to one playbook."""
    present = sorted(d for d in os.listdir(os.path.join(REPO, "roles"))
                     if os.path.isfile(os.path.join(REPO, "roles", d, "meta", "argument_specs.yml")))
    placed = [role for roles in ROLE_PLAYBOOKS.values() for role in roles]
    unplaced = [role for role in present if role not in placed]
    if unplaced:
        raise ValueError("roles in no survey (add them to ROLE_PLAYBOOKS): %s" % ", ".join(unplaced))
    return [role for role in ROLE_PLAYBOOKS[playbook] if role in present]


def survey_of_role(role):
    """The survey file that carries a role's variables."""
    return next(playbook for playbook, roles in ROLE_PLAYBOOKS.items() if role in roles) + ".json"


def role_options(role):
    """A role's options; the default is the one defaults/main.yml gives (what the role really uses)."""
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"].get("options") or {}
    defaults_file = os.path.join(REPO, "roles", role, "defaults", "main.yml")
    defaults = {}
    if os.path.exists(defaults_file):
        with open(defaults_file, encoding="utf-8") as handle:
            defaults = yaml.safe_load(handle) or {}
    result = {}
    for name, option in options.items():
        result[name] = dict(option)
        if name in defaults:
            result[name]["default"] = defaults[name]
    return result


def module_options(module):
    """The options of a module of this collection, from its DOCUMENTATION; None when it does not exist."""
    path = os.path.join(REPO, "plugins", "modules", module + ".py")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            return yaml.safe_load(node.value.value).get("options") or {}
    raise ValueError("%s has no DOCUMENTATION" % path)


def play_questions(playbook, prefix):
    """Questions for the PLAY_VARIABLES named PREFIX_* that the playbook uses."""
    path = os.path.join(REPO, "playbooks", playbook + ".yml")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return [question(variable, option) for variable, option in sorted(PLAY_VARIABLES.items())
            if variable.startswith(prefix + "_") and re.search(r"\b%s\b" % variable, text)]


def role_survey(playbook):
    """The playbook's own switches first, then its roles' variables."""
    questions, seen = play_questions(playbook, playbook), set()
    for role in role_names(playbook):
        for variable, option in role_options(role).items():
            if variable not in seen:
                seen.add(variable)
                questions.append(question(variable, option))
    return survey("sentry_selfhosted.memory.%s" % playbook,
                  "Role variables of the %s playbook (from each role's meta/argument_specs.yml)." % playbook, questions)


def playbook_survey(playbook, prefix, module):
    """Questions for the PREFIX_NAME variables a playbook passes to a module option NAME."""
    path = os.path.join(REPO, "playbooks", playbook + ".yml")
    options = module_options(module)
    if not os.path.exists(path) or options is None:
        return None
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    pattern = re.compile(r"^\s*(\w+):\s*\"\{\{\s*(%s_\w+)\s*\|\s*default\((.*?)\)\s*\}\}\"" % prefix, re.M)
    questions = []
    for name, variable, default in pattern.findall(text):
        if name not in options:
            continue
        option = dict(options[name])
        if default != "omit":
            option["default"] = yaml.safe_load(default)
        else:
            option.pop("default", None)
        questions.append(question(variable, option, comma_list=True))
    questions += play_questions(playbook, prefix)
    return survey("sentry_selfhosted.memory.%s" % playbook,
                  "Variables of the %s playbook (typed and described by the %s module)." % (playbook, module), questions)


def surveys():
    """File name -> survey spec, for every survey the collection's current content gives."""
    result = dict((playbook + ".json", role_survey(playbook)) for playbook in ROLE_PLAYBOOKS)
    for playbook, (prefix, module) in sorted(PLAYBOOKS.items()):
        spec = playbook_survey(playbook, prefix, module)
        if spec is not None:
            result[playbook + ".json"] = spec
    return result


def render(spec):
    return json.dumps(spec, indent=2, sort_keys=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", default=SURVEYS, help="directory for the JSON files (default: docs/awx/surveys)")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    wanted = surveys()
    for name in os.listdir(args.output):
        if name.endswith(".json") and name not in wanted:
            os.remove(os.path.join(args.output, name))
    for name, spec in sorted(wanted.items()):
        with open(os.path.join(args.output, name), "w", encoding="utf-8") as handle:
            handle.write(render(spec))
        print("%s: %d questions" % (os.path.join(args.output, name), len(spec["spec"])))


if __name__ == "__main__":
    main()
