"""Packaging checks: hacs.json, manifest.json, requirement pins and the brand icon.

The schemas below re-encode (not copy) what the two validators in the wild enforce:

* HACS: ``custom_components/hacs/utils/validate.py`` in the hacs/integration repository
  (``HACS_MANIFEST_JSON_SCHEMA`` for ``hacs.json``, ``extra=PREVENT_EXTRA``; and
  ``INTEGRATION_MANIFEST_JSON_SCHEMA`` for ``manifest.json``: codeowners, documentation,
  domain, issue_tracker, name and an AwesomeVersion ``version`` are required). Country codes
  are checked against ``LOCALE`` in ``custom_components/hacs/const.py`` (ISO 3166 alpha-2 or
  "ALL"); we check the format only.
* hassfest: ``script/hassfest/manifest.py`` in home-assistant/core
  (``CUSTOM_INTEGRATION_MANIFEST_SCHEMA`` = ``INTEGRATION_MANIFEST_SCHEMA`` extended with
  ``version``, ``issue_tracker`` and ``import_executor``; unknown keys are rejected because the
  schema does not allow extra keys). ``validate_manifest`` additionally requires ``version``
  for custom integrations, requires ``iot_class`` for domains outside ``NO_IOT_CLASS``, and the
  domain to equal the directory name; ``sort_manifest`` requires the keys in the order
  domain, name, then alphabetical. Newer hassfest rejects a custom integration whose
  ``documentation`` points at ``https://www.home-assistant.io/integrations``
  (``custom_documentation_url``) and knows ``preview_features``.

The discovery matchers (zeroconf, ssdp, bluetooth, homekit, dhcp, usb, mqtt) are accepted as
"a list" / "a mapping" only: Peer Energy uses none of them, so their inner shape is not encoded.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
import re
import tomllib
from typing import Any

from awesomeversion import AwesomeVersion, AwesomeVersionException, AwesomeVersionStrategy
import homeassistant
from homeassistant.const import __version__ as ha_version
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from PIL import Image
import pytest
import voluptuous as vol

from custom_components.peer_energy.const import DOMAIN

ROOT = Path(__file__).resolve().parent.parent
HACS_JSON = ROOT / "hacs.json"
INTEGRATION_DIR = ROOT / "custom_components" / DOMAIN
MANIFEST_JSON = INTEGRATION_DIR / "manifest.json"
BRAND_DIR = INTEGRATION_DIR / "brand"
HA_PACKAGE_DIR = Path(homeassistant.__file__).parent
PACKAGE_CONSTRAINTS = HA_PACKAGE_DIR / "package_constraints.txt"

# ---------------------------------------------------------------------------------------
# Shared validators
# ---------------------------------------------------------------------------------------

_CORE_DOCUMENTATION_BASE = "https://www.home-assistant.io/integrations"


def _http_url(value: Any) -> str:
    """An absolute http(s) URL with a host (HACS uses cv.url, hassfest vol.Url)."""
    if not isinstance(value, str):
        raise vol.Invalid("expected a URL string")
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value):
        raise vol.Invalid(f"not an absolute http(s) URL: {value!r}")
    return value


def _custom_documentation_url(value: Any) -> str:
    """hassfest: https only, and not the core documentation site."""
    url = _http_url(value)
    if not url.startswith("https://"):
        raise vol.Invalid("Documentation url is not prefixed with https")
    if url.startswith(_CORE_DOCUMENTATION_BASE):
        raise vol.Invalid("Documentation URL should point to the custom integration documentation")
    return url


def _hassfest_version(value: Any) -> str:
    """hassfest verify_version: a string AwesomeVersion accepts under these strategies."""
    if not isinstance(value, str):
        raise vol.Invalid("version must be a string")
    try:
        AwesomeVersion(
            value,
            ensure_strategy=[
                AwesomeVersionStrategy.CALVER,
                AwesomeVersionStrategy.SEMVER,
                AwesomeVersionStrategy.SIMPLEVER,
                AwesomeVersionStrategy.BUILDVER,
                AwesomeVersionStrategy.PEP440,
            ],
        )
    except AwesomeVersionException as err:
        raise vol.Invalid(f"{value!r} is not a valid version") from err
    return value


def _hacs_version(value: Any) -> str:
    """HACS coerces ``version`` with AwesomeVersion; an unknown strategy means garbage."""
    if not isinstance(value, str):
        raise vol.Invalid("version must be a string")
    if AwesomeVersion(value).strategy == AwesomeVersionStrategy.UNKNOWN:
        raise vol.Invalid(f"{value!r} is not a version AwesomeVersion understands")
    return value


def _countries(value: Any) -> list[str]:
    """HACS country: one code or a list of codes (ISO 3166 alpha-2, or ALL)."""
    codes = [value] if isinstance(value, str) else value
    if not isinstance(codes, list):
        raise vol.Invalid("country must be a string or a list of strings")
    for code in codes:
        if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z]{2}|ALL", code):
            raise vol.Invalid(f"{code!r} is not an ISO 3166 alpha-2 country code")
    return [code.upper() for code in codes]


def _str_list(value: Any) -> list[str]:
    """A list of strings (voluptuous ``[str]`` also accepts an empty list)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise vol.Invalid("expected a list of strings")
    return value


def _strict_bool(value: Any) -> bool:
    """voluptuous ``bool`` as a schema value is an isinstance check, so "true" fails."""
    if not isinstance(value, bool):
        raise vol.Invalid("expected a JSON boolean")
    return value


def _strict_str(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("expected a string")
    return value


# hacs/integration custom_components/hacs/utils/validate.py: HACS_MANIFEST_JSON_SCHEMA
HACS_JSON_SCHEMA = vol.Schema(
    {
        vol.Required("name"): _strict_str,
        vol.Optional("content_in_root"): _strict_bool,
        vol.Optional("country"): _countries,
        vol.Optional("filename"): _strict_str,
        vol.Optional("hacs"): _strict_str,
        vol.Optional("hide_default_branch"): _strict_bool,
        vol.Optional("homeassistant"): _strict_str,  # compared as AwesomeVersion elsewhere
        vol.Optional("persistent_directory"): _strict_str,
        vol.Optional("render_readme"): _strict_bool,
        vol.Optional("zip_release"): _strict_bool,
    },
    extra=vol.PREVENT_EXTRA,
)

# hacs/integration custom_components/hacs/utils/validate.py: INTEGRATION_MANIFEST_JSON_SCHEMA
HACS_MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("codeowners"): list,
        vol.Required("documentation"): _http_url,
        vol.Required("domain"): _strict_str,
        vol.Required("issue_tracker"): _http_url,
        vol.Required("name"): _strict_str,
        vol.Required("version"): _hacs_version,
    },
    extra=vol.ALLOW_EXTRA,
)

# home-assistant/core script/hassfest/manifest.py (model.py IntegrationType minus "virtual")
INTEGRATION_TYPES = ("device", "entity", "hardware", "helper", "hub", "service", "system")
IOT_CLASSES = (
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
)
QUALITY_SCALES = (
    "bronze",
    "silver",
    "gold",
    "platinum",
    "custom",
    "no_score",
    "internal",
    "legacy",
)

# home-assistant/core script/hassfest/manifest.py: CUSTOM_INTEGRATION_MANIFEST_SCHEMA
HASSFEST_CUSTOM_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): _strict_str,
        vol.Required("name"): _strict_str,
        vol.Optional("integration_type"): vol.In(INTEGRATION_TYPES),
        vol.Optional("config_flow"): _strict_bool,
        vol.Optional("mqtt"): _str_list,
        vol.Optional("zeroconf"): list,
        vol.Optional("ssdp"): list,
        vol.Optional("bluetooth"): list,
        vol.Optional("homekit"): dict,
        vol.Optional("dhcp"): list,
        vol.Optional("usb"): list,
        vol.Required("documentation"): _custom_documentation_url,
        vol.Optional("quality_scale"): vol.In(QUALITY_SCALES),
        vol.Optional("requirements"): _str_list,
        vol.Optional("dependencies"): _str_list,
        vol.Optional("after_dependencies"): _str_list,
        vol.Required("codeowners"): _str_list,
        vol.Optional("loggers"): _str_list,
        vol.Optional("disabled"): _strict_str,
        vol.Optional("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("single_config_entry"): _strict_bool,
        vol.Optional("preview_features"): dict,
        # Custom-integration extension.
        vol.Optional("version"): _hassfest_version,
        vol.Optional("issue_tracker"): _http_url,
        vol.Optional("import_executor"): _strict_bool,
    },
    extra=vol.PREVENT_EXTRA,
)


def _manifest_problems(manifest: dict[str, Any], dir_name: str) -> list[str]:
    """Everything hassfest and HACS would object to in an integration manifest."""
    problems: list[str] = []
    for label, schema in (("hassfest", HASSFEST_CUSTOM_SCHEMA), ("hacs", HACS_MANIFEST_SCHEMA)):
        try:
            schema(manifest)
        except vol.Invalid as err:
            problems.append(f"{label}: {err}")
    if not isinstance(manifest.get("domain"), str):
        return problems
    # validate_manifest(): the rules outside the schema.
    if manifest["domain"] != dir_name:
        problems.append("Domain does not match dir name")
    if (HA_PACKAGE_DIR / "components" / manifest["domain"]).exists():
        problems.append("Domain collides with built-in core integration")
    if "iot_class" not in manifest:
        problems.append("Domain is missing an IoT Class")
    if not manifest.get("version"):
        problems.append("No 'version' key in the manifest file")
    # sort_manifest(): domain, name, then alphabetical.
    keys = list(manifest)
    rank = {"domain": "\x00", "name": "\x01"}
    if keys != sorted(keys, key=lambda key: rank.get(key, key)):
        problems.append("Manifest keys are not sorted: domain, name, then alphabetical order")
    problems.extend(_requirement_problems(manifest.get("requirements", [])))
    for dependency in manifest.get("dependencies", []) + manifest.get("after_dependencies", []):
        if not (HA_PACKAGE_DIR / "components" / str(dependency)).is_dir():
            problems.append(f"dependency {dependency!r} is not a Home Assistant integration")
    return problems


def _constraint_pins() -> dict[str, SpecifierSet]:
    """Home Assistant's own pins (homeassistant/package_constraints.txt), by project name."""
    pins: dict[str, SpecifierSet] = {}
    for raw in PACKAGE_CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue  # e.g. URLs; none of them concern us
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        pins[name] = pins.get(name, SpecifierSet()) & req.specifier
    return pins


def _requirement_problems(requirements: Any) -> list[str]:
    """Each requirement must parse and be satisfiable under Home Assistant's pins."""
    problems: list[str] = []
    if not isinstance(requirements, list):
        return ["requirements must be a list"]
    pins = _constraint_pins()
    for entry in requirements:
        try:
            req = Requirement(str(entry))
        except InvalidRequirement as err:
            problems.append(f"requirement {entry!r} does not parse: {err}")
            continue
        if req.url:
            problems.append(f"requirement {entry!r} uses a URL; HACS users cannot install that")
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            continue
        exact = [spec.version for spec in pin if spec.operator == "=="]
        if exact:
            if not all(req.specifier.contains(Version(v), prereleases=True) for v in exact):
                problems.append(
                    f"requirement {entry!r} conflicts with Home Assistant's pin {req.name}{pin}"
                )
        elif not req.specifier:
            continue
        else:
            problems.append(f"cannot prove {entry!r} compatible with range pin {pin}")
    return problems


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} must hold a JSON object"
    return data


# ---------------------------------------------------------------------------------------
# hacs.json
# ---------------------------------------------------------------------------------------


def test_hacs_json_matches_hacs_schema() -> None:
    """hacs.json has only keys HACS accepts, with the right types."""
    hacs = _load(HACS_JSON)
    HACS_JSON_SCHEMA(hacs)
    assert hacs["name"] == "Peer Energy"


def test_hacs_json_minimum_home_assistant() -> None:
    """The declared minimum is 2025.4.0 and the tested Home Assistant satisfies it."""
    hacs = _load(HACS_JSON)
    assert hacs["homeassistant"] == "2025.4.0"
    assert AwesomeVersion(ha_version) >= AwesomeVersion(hacs["homeassistant"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"unknown_key": True}, "extra keys not allowed"),
        ({"name": None}, "name"),
        ({"render_readme": "yes"}, "render_readme"),
        ({"zip_release": 1}, "zip_release"),
        ({"homeassistant": 2025.4}, "homeassistant"),
        ({"country": ["Germany"]}, "country"),
        ({"country": 49}, "country"),
    ],
)
def test_broken_hacs_json_is_rejected(change: dict[str, Any], expected: str) -> None:
    """The schema really rejects unknown keys, wrong types and missing names."""
    broken = {**_load(HACS_JSON), **change}
    if broken.get("name") is None:
        del broken["name"]
    with pytest.raises(vol.Invalid, match=expected):
        HACS_JSON_SCHEMA(broken)


# ---------------------------------------------------------------------------------------
# manifest.json
# ---------------------------------------------------------------------------------------


def test_manifest_passes_hassfest_and_hacs() -> None:
    """manifest.json passes every hassfest and HACS rule encoded above."""
    assert _manifest_problems(_load(MANIFEST_JSON), INTEGRATION_DIR.name) == []


def test_manifest_content() -> None:
    """The values the issue asks for: local push hub with a config flow, PyNaCl required."""
    manifest = _load(MANIFEST_JSON)
    assert manifest["domain"] == DOMAIN
    assert manifest["name"] == "Peer Energy"
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["integration_type"] in INTEGRATION_TYPES
    names = {canonicalize_name(Requirement(r).name) for r in manifest["requirements"]}
    assert "pynacl" in names
    assert manifest["codeowners"]
    assert all(owner.startswith("@") for owner in manifest["codeowners"])


def test_manifest_version_matches_pyproject() -> None:
    """One version for the package: manifest.json and pyproject.toml agree."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert _load(MANIFEST_JSON)["version"] == pyproject["project"]["version"]


def test_requirements_satisfiable_under_home_assistant_pins() -> None:
    """Every requirement admits the version Home Assistant itself pins."""
    manifest = _load(MANIFEST_JSON)
    assert _requirement_problems(manifest["requirements"]) == []
    pins = _constraint_pins()
    assert "pynacl" in pins, "Home Assistant no longer pins PyNaCl; re-check the requirement"


def _without(key: str) -> dict[str, Any]:
    manifest = _load(MANIFEST_JSON)
    del manifest[key]
    return manifest


def _with(**change: Any) -> dict[str, Any]:
    manifest = _load(MANIFEST_JSON)
    manifest.update(change)
    return manifest


BROKEN_MANIFESTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown key": (_with(homepage="https://example.org"), "extra keys not allowed"),
    "missing version": (_without("version"), "No 'version' key"),
    "missing codeowners": (_without("codeowners"), "data['codeowners']"),
    "missing documentation": (_without("documentation"), "data['documentation']"),
    "missing issue_tracker": (_without("issue_tracker"), "hacs: required key not provided"),
    "missing iot_class": (_without("iot_class"), "missing an IoT Class"),
    "codeowners not a list": (_with(codeowners="@peer-energy"), "data['codeowners']"),
    "config_flow as string": (_with(config_flow="true"), "data['config_flow']"),
    "bad iot_class": (_with(iot_class="local_pull"), "data['iot_class']"),
    "bad integration_type": (_with(integration_type="virtual"), "data['integration_type']"),
    "version not a version": (_with(version="one point oh"), "is not a valid version"),
    "version a number": (_with(version=1.0), "version must be a string"),
    "requirements a string": (_with(requirements="PyNaCl>=1.5.0"), "data['requirements']"),
    "unparsable requirement": (_with(requirements=["PyNaCl >>= 1"]), "does not parse"),
    "requirement against HA pin": (
        _with(requirements=["PyNaCl>=1.6"]),
        "conflicts with Home Assistant's pin",
    ),
    "documentation over http": (
        _with(documentation="http://example.org/peer_energy"),
        "not prefixed with https",
    ),
    "documentation on core site": (
        _with(documentation="https://www.home-assistant.io/integrations/peer_energy"),
        "should point to the custom integration documentation",
    ),
    "issue_tracker not a URL": (_with(issue_tracker="issues"), "data['issue_tracker']"),
    "domain differs from directory": (_with(domain="peer_energy_x"), "does not match dir name"),
    "domain of a core integration": (_with(domain="energy"), "collides with built-in"),
    "unknown dependency": (
        _with(dependencies=["no_such_integration_xyz"]),
        "is not a Home Assistant integration",
    ),
}


def _unsorted() -> dict[str, Any]:
    manifest = _load(MANIFEST_JSON)
    return {"name": manifest["name"], **{k: v for k, v in manifest.items() if k != "name"}}


BROKEN_MANIFESTS["keys not sorted"] = (_unsorted(), "keys are not sorted")


@pytest.mark.parametrize(
    ("broken", "expected"), BROKEN_MANIFESTS.values(), ids=BROKEN_MANIFESTS.keys()
)
def test_broken_manifest_is_rejected(broken: dict[str, Any], expected: str) -> None:
    """Each broken copy of the real manifest is rejected for the reason it was broken."""
    problems = _manifest_problems(copy.deepcopy(broken), INTEGRATION_DIR.name)
    assert any(expected in problem for problem in problems), problems


# ---------------------------------------------------------------------------------------
# Brand icon
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [("icon.png", 256), ("icon@2x.png", 512), ("logo.png", 256), ("logo@2x.png", 512)],
)
def test_brand_icon(name: str, size: int) -> None:
    """Square PNG of the brand size with a transparent background and a visible mark
    (Home Assistant 2026.3 and newer show brand/ of a custom integration)."""
    with Image.open(BRAND_DIR / name) as image:
        assert image.format == "PNG"
        assert image.size == (size, size)
        assert image.mode == "RGBA"
        alpha = image.getchannel("A")
        for corner in ((0, 0), (size - 1, 0), (0, size - 1), (size - 1, size - 1)):
            assert alpha.getpixel(corner) == 0, f"corner {corner} is not transparent"
        histogram = alpha.histogram()
        opaque_share = sum(histogram[200:]) / (size * size)
        assert 0.15 < opaque_share < 0.85, f"mark covers {opaque_share:.0%} of the icon"
