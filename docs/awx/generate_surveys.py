#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the AWX/Tower survey specs (docs/awx/surveys/*.json) and the inventory example (docs/awx/group_vars/sentry.yml).

AWX passes every survey answer as an extra variable, an answer left at its
default too, and extra variables beat every inventory variable. So a survey
asks only what an operator decides per launch (which hosts, which parts, how
many hosts at once, which release), and everything that differs per host or
per group lives in the inventory:

- surveys/*.json: the LAUNCH questions below. A question presets nothing
  except a play keyword of PRESETS (a play's serial and failure percentage,
  which the inventory cannot set: Ansible reads them before any host). A yes/no
  question is required (AWX would send an empty answer that no role takes for
  a boolean); an optional question is text, and its playbook reads an empty
  answer as "not given".
- group_vars/sentry.yml: every role option (meta/argument_specs.yml, with the
  default that defaults/main.yml gives), the collection-wide variables (README's
  table) and the playbook variables that feed a module option, each line
  commented out with its default and description, to copy into the inventory.

Labels and help texts of questions that are role or module options come from
the role's argument spec or the module's DOCUMENTATION.

    python docs/awx/generate_surveys.py            # rewrite docs/awx/surveys/ and docs/awx/group_vars/sentry.yml
    python docs/awx/generate_surveys.py --output DIR --group-vars FILE
"""

import argparse
import ast
import json
import os
import re
import textwrap

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SURVEYS = os.path.join(REPO, "docs", "awx", "surveys")
GROUP_VARS = os.path.join(REPO, "docs", "awx", "group_vars", "sentry.yml")

# Every role, in the order the example lists them (site's order, then the upgrade).
ROLES = ["swap", "compose_limits", "relay_health", "memory_alerts", "restart_timer", "upgrade"]
# Roles only the roles above include: their variables are set by those roles, never by the inventory.
INCLUDED_ROLES = ["host_program"]
# The collection-wide variables: README.md's table between these markers describes them.
COLLECTION_TABLE = re.compile(r"<!-- collection variables -->\n(.*?)<!-- end collection variables -->", re.S)
# Playbook variables PREFIX_NAME that feed a module option NAME and belong to the inventory: playbook -> (prefix, module).
PLAYBOOK_OPTIONS = {"audit": ("audit", "memory_info"), "restart": ("restart", "relay_restart")}
# Play keywords a survey may preset: Ansible templates them before any host, so no inventory value is overridden.
PRESETS = {"site_serial", "site_max_fail_percentage", "restart_serial"}


def hosts(playbook):
    """The question naming the hosts a playbook acts on (required: the playbook has no safe default)."""
    return ("%s_hosts" % playbook, {
        "type": "str", "required": True, "min": 1, "label": "Hosts",
        "description": "The inventory group or host pattern to act on (for example sentry, or sentry:!sentry-eu-1); "
                       "the job template's Limit narrows it further.",
    })


def switch(role):
    return ("site_%s" % role, {
        "type": "bool", "label": "Run the %s role" % role.replace("_", " "),
        "description": "Run the %s role (tag %s) on these hosts in this run." % (role, role),
    })


# survey -> [(variable, question spec)]; spec "role:NAME" or "module:NAME.OPTION" takes the option's type and description.
LAUNCH = {
    "site": [hosts("site")] + [switch(role) for role in ROLES[:5]] + [
        ("site_serial", {
            "type": "str", "required": True, "default": "25%", "label": "Hosts at once while services restart",
            "description": "How many hosts at once (a number or a percentage) in the play that recreates and restarts services.",
        }),
        ("site_max_fail_percentage", {
            "type": "int", "required": True, "default": 0, "min": 0, "max": 100,
            "label": "Failed hosts that stop the roll-out (percent)",
            "description": "Stop the roll-out when more than this percentage of a batch fails (0: at the first failed host).",
        }),
    ],
    "upgrade": [hosts("upgrade"), ("upgrade_ref", "role:upgrade"), ("upgrade_force", "role:upgrade")],
    "restart": [hosts("restart"), ("restart_services", "module:relay_restart.services"), ("restart_serial", {
        "type": "int", "required": True, "default": 1, "min": 1, "max": None, "label": "Hosts restarted at once",
        "description": "How many hosts restart at once (the play's serial); one failed host stops the roll-out.",
    })],
    "audit": [hosts("audit")],
}
DESCRIPTIONS = {
    "site": "What to run on which Sentry hosts; host settings come from the inventory (docs/awx/group_vars/sentry.yml).",
    "upgrade": "Which hosts to upgrade to which release; host settings come from the inventory (docs/awx/group_vars/sentry.yml).",
    "restart": "Which hosts restart which services, how many at once; host settings come from the inventory.",
    "audit": "Which hosts to audit; host settings come from the inventory (docs/awx/group_vars/sentry.yml).",
}
# Words of variable names as a label says them (units spelt out, acronyms in capitals).
LABEL_WORDS = {"ref": "Git ref", "nginx": "nginx", "relay": "Relay"}
LABEL_PARTS = {"upgrade": "Upgrade", "restart": "Restart"}
MARKUP = re.compile(r"\b[CVOIBMLPU]\(([^)]*)\)")


def plain(description):
    """One line of text from an Ansible description (string or list), markup removed."""
    if isinstance(description, list):
        description = " ".join(description)
    return " ".join(MARKUP.sub(r"\1", str(description or "")).split())


def label(variable):
    """A variable's name in words, sentence case, after the part of the collection it belongs to."""
    prefix, dummy, rest = variable.partition("_")
    words = " ".join(LABEL_WORDS.get(word, word) for word in rest.split("_"))
    return "%s: %s" % (LABEL_PARTS[prefix], words[:1].upper() + words[1:])


def answer(value):
    """A value as an AWX text or choice answer (AWX answers are strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


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
    """The options of a module of this collection, from its DOCUMENTATION."""
    with open(os.path.join(REPO, "plugins", "modules", module + ".py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            return yaml.safe_load(node.value.value).get("options") or {}
    raise ValueError("plugins/modules/%s.py has no DOCUMENTATION" % module)


def inventory_variables():
    """Every variable the inventory may set: role options, collection-wide ones, playbook ones feeding a module;
    not those a survey asks per launch."""
    names = set()
    for role in ROLES:
        names.update(role_options(role))
    names.update(name for dummy, options in playbook_variables() for name in options)
    return names - launched_options()


def question(variable, spec):
    """One AWX survey question. Refuses a preset of anything but a play keyword, and an optional non-text question."""
    if isinstance(spec, str):
        source, dummy, where = spec.partition(":")
        if source == "role":
            option = role_options(where)[variable]
        else:
            module, dummy, name = where.partition(".")
            option = module_options(module)[name]
        spec = {"type": option.get("type", "str"), "label": label(variable), "description": plain(option.get("description")),
                "required": option.get("type") == "bool"}
        if option.get("type") == "list":
            spec.update(type="str", description=spec["description"] + " Comma-separated; empty: %s."
                        % ", ".join(answer(v) for v in option.get("default") or []))
    kind = spec["type"]
    default = spec.get("default")
    required = bool(spec.get("required", kind == "bool"))
    if default is not None and variable not in PRESETS:
        raise ValueError("%s: a survey default would override the inventory (presets: %s)" % (variable, sorted(PRESETS)))
    if not required and kind != "str":
        raise ValueError("%s: an optional %s question; AWX may send its empty answer, which no role takes" % (variable, kind))
    item = {
        "question_name": spec["label"],
        "question_description": spec["description"],
        "variable": variable,
        "required": required,
        # AWX refuses a min or max that is not an integer or null.
        "min": spec.get("min"),
        "max": spec.get("max"),
        "choices": "",
        "default": "",
    }
    if kind == "bool":
        item.update(type="multiplechoice", choices="true\nfalse")
    elif kind == "int":
        item.update(type="integer", default=default if default is not None else "")
    else:
        item.update(type="text", default=answer(default))
    return item


def surveys():
    """File name -> survey spec."""
    return dict(("%s.json" % playbook, {
        "name": "sentry_selfhosted.memory.%s" % playbook,
        "description": DESCRIPTIONS[playbook],
        "spec": [question(variable, spec) for variable, spec in questions],
    }) for playbook, questions in LAUNCH.items())


def collection_variables():
    """The collection-wide variables, as README.md's table describes them: name -> description."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        table = COLLECTION_TABLE.search(handle.read()).group(1)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    return dict((row[0].strip("| `"), row[2].rstrip(" |").replace("`", "")) for row in rows)


def launched_options():
    """The role and module options a survey asks per launch (they stay out of the inventory)."""
    return set(variable for questions in LAUNCH.values() for variable, spec in questions if isinstance(spec, str))


def playbook_variables():
    """(playbook, {variable: option}) for the playbook variables PREFIX_NAME that feed a module option NAME,
    except those a survey asks per launch."""
    launched = set(variable for questions in LAUNCH.values() for variable, dummy in questions)
    result = []
    for playbook, (prefix, module) in sorted(PLAYBOOK_OPTIONS.items()):
        with open(os.path.join(REPO, "playbooks", playbook + ".yml"), encoding="utf-8") as handle:
            text = handle.read()
        options = module_options(module)
        pattern = re.compile(r"^\s*(\w+):\s*\"\{\{\s*(%s_\w+)\s*\|\s*default\((.*?)(?:,\s*true)?\)\s*\}\}\"" % prefix, re.M)
        found = {}
        for name, variable, default in pattern.findall(text):
            if name in options and variable not in launched:
                option = dict(options[name])
                if default.strip() == "omit":
                    option.pop("default", None)
                else:
                    option["default"] = yaml.safe_load(default)
                found[variable] = option
        result.append((playbook, found))
    return result


def commented(name, option):
    """An option as commented lines: its description, then `# name: default`."""
    description = plain(option.get("description"))
    if option.get("no_log"):
        description += " A secret: never here in clear text (a vaulted file, or AWX's credential: docs/awx/README.md)."
    lines = ["# " + line for line in textwrap.wrap(description, 116, break_on_hyphens=False)]
    # The default in YAML's flow style, on one line: dumped as the one item of a list, the brackets taken off.
    value = "%s: %s" % (name, yaml.safe_dump([option.get("default")], default_flow_style=True, width=10000).strip()[1:-1])
    for line in lines:
        if re.match(r"^# [a-z][a-z0-9_]*:( |$)", line):
            raise ValueError("%s: a description line reads like a variable: %r" % (name, line))
    return lines + ["# " + value, ""]


def group_vars():
    """The inventory example: every variable the inventory may set, commented out with its default."""
    out = [
        "---",
        "# GENERATED by docs/awx/generate_surveys.py: do not edit by hand.",
        "# Every variable of sentry_selfhosted.memory that may differ per host or per group: copy this file into the",
        "# inventory as group_vars/GROUP.yml (host_vars/HOST.yml for one host) and uncomment what differs there.",
        "# A commented line shows the default the collection uses. The AWX surveys ask none of these: a survey answer",
        "# is an extra variable and would override every host's own value (docs/awx/README.md).",
        "# Asked per launch instead, so not set here: %s." % ", ".join(sorted(launched_options())),
        "",
    ]
    present = sorted(d for d in os.listdir(os.path.join(REPO, "roles"))
                     if os.path.isfile(os.path.join(REPO, "roles", d, "meta", "argument_specs.yml")))
    if sorted(ROLES + INCLUDED_ROLES) != present:
        raise ValueError("ROLES and INCLUDED_ROLES list %s; roles/ has %s"
                         % (", ".join(sorted(ROLES + INCLUDED_ROLES)), ", ".join(present)))
    shared = collection_variables()
    options = {}
    for role in ROLES:
        for name, option in role_options(role).items():
            options.setdefault(name, option)
    out += ["# ---- Collection-wide (every role and playbook) ----", ""]
    for name in shared:
        out += commented(name, dict(options[name], description=shared[name]))
    for role in ROLES:
        out += ["# ---- %s role (roles/%s/README.md) ----" % (role, role), ""]
        for name, option in role_options(role).items():
            if name not in shared and name not in launched_options():
                out += commented(name, option)
    for playbook, found in playbook_variables():
        out += ["# ---- %s playbook ----" % playbook, ""]
        for name, option in found.items():
            out += commented(name, option)
    return "\n".join(out).rstrip("\n") + "\n"


def render(spec):
    return json.dumps(spec, indent=2, sort_keys=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", default=SURVEYS, help="directory for the JSON files (default: docs/awx/surveys)")
    parser.add_argument("--group-vars", default=GROUP_VARS, help="the inventory example (default: docs/awx/group_vars/sentry.yml)")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    wanted = surveys()
    for name in os.listdir(args.output):
        if name.endswith(".json") and name not in wanted:
            os.remove(os.path.join(args.output, name))
    for name, spec in sorted(wanted.items()):
        with open(os.path.join(args.output, name), "w", encoding="utf-8") as handle:
            handle.write(render(spec))
        presets = sum(1 for item in spec["spec"] if item["default"] != "")
        print("%s: %d questions, %d preset" % (os.path.join(args.output, name), len(spec["spec"]), presets))
    os.makedirs(os.path.dirname(os.path.abspath(args.group_vars)), exist_ok=True)
    with open(args.group_vars, "w", encoding="utf-8") as handle:
        handle.write(group_vars())
    print("%s: %d variables" % (args.group_vars, len(inventory_variables())))


if __name__ == "__main__":
    main()
