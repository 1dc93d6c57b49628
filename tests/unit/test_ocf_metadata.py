"""Meta-data of ocf:perfplus:VirtualDomain: valid against ra-api-1.dtd (what ocf-tester
checks), faithful to the declarations, deterministic; the committed parameter doc is current."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from perfplus_agent import __version__
from perfplus_agent.ocf.metadata import (
    ACTIONS,
    UPSTREAM_ACTIONS,
    ActionSpec,
    metadata_xml,
    parameters_markdown,
)
from perfplus_agent.ocf.params import PARAMETERS, ParamSpec

RA_DIR = Path("/usr/share/resource-agents")
DTD = RA_DIR / "ra-api-1.dtd"
DOC = Path(__file__).resolve().parents[2] / "docs" / "virtualdomain-parameters.md"
UPSTREAM_AGENT = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")


def tree(xml: str | None = None) -> etree._Element:
    return etree.fromstring((xml or metadata_xml()).encode())


def xmllint_valid(xml: str) -> subprocess.CompletedProcess[str]:
    """What ocf-tester does: validate against ra-api-1.dtd, from the DTD's directory."""
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint is not installed (Debian package libxml2-utils)")
    if not DTD.is_file():
        pytest.skip(f"{DTD} is not installed (Debian package resource-agents)")
    return subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, cwd=RA_DIR,
                          capture_output=True, text=True, timeout=30, check=False)


# -- validity ------------------------------------------------------------------------------
def test_metadata_is_valid_against_the_dtd():
    res = xmllint_valid(metadata_xml())
    assert res.returncode == 0, res.stderr


def test_the_dtd_check_can_fail():
    """reload-agent is exactly what the DTD rejects, which is why ACTIONS leaves it out."""
    bad = metadata_xml(actions=(*ACTIONS, ActionSpec("reload-agent", 10)))
    res = xmllint_valid(bad)
    assert res.returncode != 0
    assert "reload-agent" in res.stderr


def test_the_dtd_check_needs_the_doctype():
    no_doctype = "\n".join(line for line in metadata_xml().splitlines()
                           if not line.startswith("<!DOCTYPE"))
    assert xmllint_valid(no_doctype).returncode != 0


def test_reload_agent_is_not_advertised():
    assert "reload-agent" not in {a.name for a in ACTIONS}


# -- content -------------------------------------------------------------------------------
def test_header():
    xml = metadata_xml()
    assert xml.startswith('<?xml version="1.0"?>\n'
                          '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n')
    # crmsh hands the text to lxml as a str: that must parse (no encoding declaration).
    assert etree.fromstring(xml).tag == "resource-agent"
    root = tree(xml)
    assert root.tag == "resource-agent"
    assert root.get("name") == "VirtualDomain" and root.get("version") == __version__
    assert root.findtext("version") == "1.1"
    assert [c.tag for c in root] == ["version", "longdesc", "shortdesc", "parameters",
                                     "actions"]
    for desc in ("longdesc", "shortdesc"):
        assert root.find(desc).get("lang") == "en" and root.findtext(desc).strip()


def test_parameters_match_the_declarations():
    elems = tree().findall("parameters/parameter")
    assert [e.get("name") for e in elems] == [p.name for p in PARAMETERS]
    for elem, spec in zip(elems, PARAMETERS, strict=True):
        assert elem.get("required") == ("1" if spec.name == "config" else "0")
        assert elem.get("unique") == ("1" if spec.name == "config" else "0")
        assert elem.findtext("longdesc") == spec.longdesc
        assert elem.findtext("shortdesc") == spec.shortdesc
        assert {elem.find(d).get("lang") for d in ("longdesc", "shortdesc")} == {"en"}
        content = elem.find("content")
        assert content.get("type") == spec.content
        assert content.get("default") == spec.default


def test_actions_and_timeouts():
    elems = tree().findall("actions/action")
    got = {e.get("name"): dict(e.attrib) for e in elems}
    assert got == {
        "start": {"name": "start", "timeout": "90s"},
        "stop": {"name": "stop", "timeout": "90s"},
        "monitor": {"name": "monitor", "timeout": "30s", "interval": "10s", "depth": "0"},
        "status": {"name": "status", "timeout": "30s", "interval": "10s", "depth": "0"},
        "migrate_to": {"name": "migrate_to", "timeout": "120s"},
        "migrate_from": {"name": "migrate_from", "timeout": "60s"},
        "validate-all": {"name": "validate-all", "timeout": "10s"},
        "meta-data": {"name": "meta-data", "timeout": "5s"},
    }


def test_every_time_has_an_s_suffix():
    for elem in tree().iterfind("actions/action"):
        for attr in ("timeout", "interval"):
            if elem.get(attr) is not None:
                assert re.fullmatch(r"[0-9]+s", elem.get(attr)), (elem.get("name"), attr)


def test_every_upstream_action_is_advertised():
    assert {a.name for a in UPSTREAM_ACTIONS} <= {a.name for a in ACTIONS}


def test_upstream_action_list_is_the_installed_one():
    if not UPSTREAM_AGENT.is_file():
        pytest.skip(f"{UPSTREAM_AGENT} is not installed (Debian package resource-agents)")
    env = {**os.environ, "OCF_ROOT": "/usr/lib/ocf"}
    out = subprocess.run([str(UPSTREAM_AGENT), "meta-data"], capture_output=True, env=env,
                         timeout=30, check=True).stdout
    upstream = {e.get("name"): e.get("timeout")
                for e in etree.fromstring(out).iterfind("actions/action")}
    assert upstream == {a.name: a.advertised.split(",")[0].removeprefix("timeout ")
                        for a in UPSTREAM_ACTIONS}


def test_output_is_deterministic_and_ascii():
    first = metadata_xml()
    assert first == metadata_xml()
    assert first.isascii()


# -- escaping ------------------------------------------------------------------------------
def test_markup_characters_survive_a_round_trip():
    tricky = 'a < b && c > d, "quoted" \'single\' ]]> <!-- not a comment -->'
    spec = ParamSpec("tricky", "string", '<&">', shortdesc=f"short {tricky}",
                     longdesc=f"long {tricky}")
    xml = metadata_xml(parameters=(spec,))
    elem = tree(xml).find("parameters/parameter")
    assert elem.findtext("longdesc") == f"long {tricky}"
    assert elem.findtext("shortdesc") == f"short {tricky}"
    assert elem.find("content").get("default") == '<&">'
    assert "<!-- not" not in xml
    assert xmllint_valid(xml).returncode == 0


def test_real_descriptions_with_markup_survive():
    elem = tree().find("parameters/parameter[@name='config']")
    assert "<name>" in elem.findtext("longdesc")


# -- documentation -------------------------------------------------------------------------
def test_committed_doc_matches_the_generator():
    assert DOC.read_text() == parameters_markdown(), (
        "docs/virtualdomain-parameters.md is stale; regenerate it with the command in its "
        "header comment")


def test_doc_names_every_parameter_and_action():
    doc = parameters_markdown()
    for p in PARAMETERS:
        assert f"| `{p.name}`" in doc and f"### `{p.name}`" in doc, p.name
    for a in UPSTREAM_ACTIONS:
        assert f"| `{a.name}` |" in doc, a.name


def test_doc_escapes_table_breakers():
    spec = ParamSpec("x", "string", None, shortdesc="a | b", longdesc="see <name> | c",
                     difference="d | e")
    doc = parameters_markdown(parameters=(spec,))
    row = next(line for line in doc.splitlines() if line.startswith("| `x`"))
    assert row == "| `x` | string | (unset) | a \\| b | d \\| e |"
    assert "see \\<name> \\| c" in doc
