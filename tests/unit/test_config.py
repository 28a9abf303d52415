"""Config loading: the repository's config.toml is the defaults, loading is strict
and every error names the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from conftest import REPO, run_tagd, write_config

from tagd.config import (
    ConfigError,
    Settings,
    TagRule,
    find_config_file,
    load_settings,
    parse_settings,
)
from tagd.config.messages import key_of

REPO_CONFIG = REPO / "config.toml"


def load_text(tmp_path: Path, text: str) -> Settings:
    return load_settings(write_config(tmp_path / "config.toml", text))


@pytest.mark.skipif(not REPO_CONFIG.is_file(), reason=f"{REPO_CONFIG} does not exist yet")
def test_repo_config_is_exactly_the_defaults() -> None:
    loaded = load_settings(REPO_CONFIG)
    assert loaded.source == REPO_CONFIG.resolve()
    plain = dataclasses.replace(loaded, source=None)
    defaults = Settings()
    # Section by section first, so a failure says which section drifted.
    for f in dataclasses.fields(Settings):
        assert getattr(plain, f.name) == getattr(defaults, f.name), f.name
    assert plain == defaults


@pytest.mark.skipif(not REPO_CONFIG.is_file(), reason=f"{REPO_CONFIG} does not exist yet")
def test_repo_config_shows_every_key() -> None:
    """Equal defaults are not enough: a key left out of config.toml is still its
    default. Every key is written in its section, or shown commented out where
    TOML cannot write its default (None) or its profile sets it."""
    import re
    import tomllib

    text = REPO_CONFIG.read_text()
    written = tomllib.loads(text)

    def section_text(path: str) -> str:
        header = f"\n[{path}]\n"
        body = text[text.index(header) + len(header) :] if path else text
        following = re.search(r"^\[", body, re.M)
        return body[: following.start()] if following else body

    def missing(section: type, table: dict, path: str) -> list[str]:
        out = []
        for f in dataclasses.fields(section):
            name = key_of(f)
            key = f"{path}.{name}" if path else name
            value = getattr(section(), f.name)
            if f.name == "source":
                continue
            if dataclasses.is_dataclass(value):
                out += missing(type(value), table.get(name, {}), key)
            elif name not in table and f"\n# {name} = " not in section_text(path):
                out.append(key)
        return out

    assert missing(Settings, written, "") == []


def test_empty_file_and_no_file_are_the_defaults(tmp_path: Path, state_dir: Path) -> None:
    assert dataclasses.replace(load_text(tmp_path, ""), source=None) == Settings()
    assert find_config_file() is None  # state_dir fixture: no TAGD_CONFIG, empty XDG
    assert load_settings() == Settings()


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        # unknown key: names it and lists what is allowed there
        ("[library]\nrootz = []\n", ["library.rootz", "unknown key", "roots", "exclude"]),
        ("colour = 1\n", ["colour", "unknown key", "library", "runtime"]),
        (
            "[tags.objects.labels.person]\nthreshhold = 0.7\n",
            ["tags.objects.labels.person.threshhold", "unknown key", "threshold"],
        ),
        # wrong type
        ('[runtime]\nbatch_size = "8"\n', ["runtime.batch_size", "'8' (str)", "expected int"]),
        ("[runtime]\nbatch_size = true\n", ["runtime.batch_size", "True (bool)", "expected int"]),
        ("[runtime]\nbatch_size = 2.5\n", ["runtime.batch_size", "2.5 (float)", "expected int"]),
        ("[xmp]\nenabled = 1\n", ["xmp.enabled", "1 (int)", "expected bool"]),
        ('[library]\nroots = "/photos"\n', ["library.roots", "'/photos' (str)", "list"]),
        (
            '[library]\nimage_extensions = ["jpg", 3]\n',
            ["library.image_extensions[1]", "3 (int)", "expected str"],
        ),
        ("runtime = 5\n", ["runtime", "5 (int)", "table"]),
        (
            "[tags.objects.labels]\nperson = 0.7\n",
            ["tags.objects.labels.person", "0.7 (float)", "table"],
        ),
        (
            "[tags.objects.labels.person]\nname = 7\n",
            ["tags.objects.labels.person.name", "7 (int)", "expected str"],
        ),
        # out of range
        ("[runtime]\nbatch_size = 0\n", ["runtime.batch_size", "0 (int)", "between 1 and 256"]),
        (
            "[tags.objects]\nthreshold = 1.5\n",
            ["tags.objects.threshold", "1.5 (float)", "between 0.0 and 1.0"],
        ),
        (
            "[tags.objects.labels.dog]\nthreshold = -0.1\n",
            ["tags.objects.labels.dog.threshold", "-0.1", "between 0.0 and 1.0"],
        ),
        ("[decode]\nmax_pixels = 0\n", ["decode.max_pixels", "0 (int)", "at least 1"]),
        # bad Literal
        (
            '[runtime]\nbackend = "gpu"\n',
            ["runtime.backend", "'gpu' (str)", "'auto'", "'cpu'", "'openvino'", "'cuda'"],
        ),
        ('[xmp]\nsidecar = "both"\n', ["xmp.sidecar", "'both'", "'ext'", "'stem'"]),
        ('[daemon]\nlog_level = "INFO"\n', ["daemon.log_level", "'INFO'", "'info'"]),
        # checks across values
        ('[library]\nimage_extensions = [".JPG"]\n', ["library.image_extensions", "'.JPG'"]),
        ('[tags]\nroot = "A|B"\n', ["tags.root", "'A|B'", "'|'"]),
        ('[library]\nexclude = [" "]\n', ["library.exclude[0]", "empty pattern"]),
        # inference servers
        (
            '[runtime]\nbackend = "remote"\n',
            ["runtime.backend = 'remote' needs at least one [[runtime.endpoints]]", "grpc://"],
        ),
        (
            '[[runtime.endpoints]]\nurl = "http://nas:8000"\n',
            ["runtime.endpoints[0].url", "'http://nas:8000'", "grpc://host:port", "8001"],
        ),
        (
            '[[runtime.endpoints]]\nurl = "grpc://nas"\n',
            ["runtime.endpoints[0].url", "must be grpc://host:port"],
        ),
        (
            '[[runtime.endpoints]]\nurl = "grpc://nas:8001"\nmax_concurrent = 0\n',
            ["runtime.endpoints[0].max_concurrent", "between 1 and 64"],
        ),
        (
            '[runtime]\nremote_analyzers = ["text"]\n'
            '[[runtime.endpoints]]\nurl = "grpc://nas:8001"\n',
            ["runtime.remote_analyzers", "'text'", "ocr"],
        ),
        (
            '[runtime]\nremote_analyzers = ["ocr"]\n'
            '[[runtime.endpoints]]\nurl = "grpc://nas:8001"\nfallback = true\n',
            ["runtime.remote_analyzers needs at least one [[runtime.endpoints]] without fallback"],
        ),
        (
            "[vlm]\nenabled = true\n",
            ["vlm.model: name the model", "needs at least one [[vlm.endpoints]]"],
        ),
        (
            '[[vlm.endpoints]]\nurl = "grpc://nas:8001"\n',
            ["vlm.endpoints[0].url", "http(s)://host:port/v1"],
        ),
        ('[vlm.tags]\nscene = ["a|b"]\n', ["vlm.tags.scene", "'|'"]),
        (
            '[tags.vlm.labels.beech]\nname = "x"\n',
            ["tags.vlm.labels.beech", "beach"],
        ),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    path = write_config(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, f"{needle!r} missing from {message!r}"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_text(tmp_path, "[runtime\nbatch_size = 2\n")
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[tags]\nroot = "\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings(bad)


def test_per_label_overrides_parse(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
[tags.objects]
threshold = 0.4

[tags.objects.labels.person]
threshold = 0.7

[tags.objects.labels."dining table"]
name = "table"
parent = "Objects|Furniture"

[tags.objects.labels.tie]
enabled = false
""",
    )
    labels = settings.tags.objects.labels
    assert settings.tags.objects.threshold == 0.4
    assert labels["person"] == TagRule(threshold=0.7)
    assert labels["dining table"] == TagRule(name="table", parent="Objects|Furniture")
    assert labels["tie"] == TagRule(enabled=False)
    assert set(labels) == {"person", "dining table", "tie"}
    # An int where a float is wanted is a float.
    rule = parse_settings({"tags": {"objects": {"labels": {"cat": {"threshold": 1}}}}})
    threshold = rule.tags.objects.labels["cat"].threshold
    assert threshold == 1.0 and isinstance(threshold, float)


def test_values_are_kept(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        """
[library]
roots = ["/a", "/b"]
include_hidden = true
[runtime]
backend = "cpu"
batch_size = 3
[decode]
video_interval = 5
[xmp]
sidecar = "stem"
""",
    )
    assert settings.library.roots == ["/a", "/b"]
    assert settings.library.include_hidden is True
    assert settings.runtime.backend == "cpu"
    assert settings.runtime.batch_size == 3
    assert settings.decode.video_interval == 5.0
    assert settings.xmp.sidecar == "stem"
    assert settings.objects == Settings().objects  # untouched sections keep defaults


# ---------------------------------------------------------------- the command


GOOD = "[runtime]\nbatch_size = 4\n"
BAD = "[runtime]\nbatch_size = 999\n"


def test_config_check_exit_codes(tmp_path: Path, state_dir: Path, cli) -> None:
    good = write_config(tmp_path / "good.toml", GOOD)
    bad = write_config(tmp_path / "bad.toml", BAD)

    code, out, err = cli("config", "check", good)
    assert code == 0, err
    assert str(good) in out and "OK" in out

    code, out, err = cli("config", "check", bad)
    assert code == 2
    assert "runtime.batch_size" in err and "999" in err and "between 1 and 256" in err
    assert "OK" not in out

    code, out, err = cli("config", "check", tmp_path / "missing.toml")
    assert code == 2 and "not found" in err

    code, out, _ = cli("config", "check")  # no file anywhere: the built-in defaults
    assert code == 0 and "built-in defaults" in out

    code, out, err = cli("--config", bad, "config", "check")
    assert code == 2 and "runtime.batch_size" in err


def test_tagd_config_env_selects_and_option_beats_it(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    good = write_config(tmp_path / "good.toml", GOOD)
    bad = write_config(tmp_path / "bad.toml", BAD)

    monkeypatch.setenv("TAGD_CONFIG", str(bad))
    assert find_config_file() == bad
    code, _, err = cli("config", "check")
    assert code == 2 and str(bad) in err

    code, out, err = cli("--config", good, "config", "check")
    assert code == 0, err
    assert str(good) in out
    assert find_config_file(good) == good

    monkeypatch.setenv("TAGD_CONFIG", str(good))
    code, out, _ = cli("config", "check")
    assert code == 0 and str(good) in out
    assert load_settings().runtime.batch_size == 4


def test_tagd_config_env_drives_other_commands(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, make_jpeg, cli
) -> None:
    """TAGD_CONFIG's library.roots is what a bare `tagd scan --index-only` scans."""
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    other = tmp_path / "other"
    make_jpeg(other / "b.jpg", seed=1)
    env_cfg = write_config(tmp_path / "env.toml", f'[library]\nroots = ["{lib}"]\n')
    opt_cfg = write_config(tmp_path / "opt.toml", f'[library]\nroots = ["{other}"]\n')
    monkeypatch.setenv("TAGD_CONFIG", str(env_cfg))

    code, out, err = cli("scan", "--index-only")
    assert code == 0, err
    assert "indexed 1 file: 1 new" in out
    code, out, err = cli("--config", opt_cfg, "scan", "--index-only")
    assert code == 0, err
    assert "indexed 1 file: 1 new" in out  # b.jpg, a different file

    from tagd.catalog.catalog import Catalog

    with Catalog(state_dir / "catalog.db") as catalog:
        assert sorted(catalog.files_under("/")) == [str(lib / "a.jpg"), str(other / "b.jpg")]


# ---------------------------------------------------------------- nan, labels, odd files


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[tags.objects]\nthreshold = nan\n", ["tags.objects.threshold", "nan", "0.0 and 1.0"]),
        (
            "[tags.objects.labels.person]\nthreshold = nan\n",
            ["tags.objects.labels.person.threshold", "nan", "between 0.0 and 1.0"],
        ),
        ("[objects]\nmin_score = -nan\n", ["objects.min_score", "nan", "between 0.0 and 1.0"]),
        ("[runtime]\nidle_unload = nan\n", ["runtime.idle_unload", "nan", "at least 0"]),
        ("[decode]\nvideo_interval = inf\n", ["decode.video_interval", "inf", "0.1 and 3600"]),
        ("[tags.video]\nmin_total = -inf\n", ["tags.video.min_total", "-inf", "0.0 and 86400"]),
    ],
)
def test_nan_and_inf_are_refused(tmp_path: Path, text: str, needles: list[str]) -> None:
    """TOML allows nan and inf; nan passes every comparison, so it would pass any
    range and, as a threshold, silently drop every detection."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            "[tags.objects.labels.presron]\nthreshold = 0.7\n",
            ["tags.objects.labels.presron", "picodet-s-416", "did you mean 'person'"],
        ),
        ('[tags.objects.labels.Dog]\nname = "Hund"\n', ["tags.objects.labels.Dog", "'dog'"]),
        (
            "[tags.nsfw.labels.FACE_FEMAL]\nenabled = false\n",
            ["tags.nsfw.labels.FACE_FEMAL", "nudenet", "'FACE_FEMALE'"],
        ),
        (
            "[tags.concepts.labels.doggo]\nthreshold = 0.5\n",
            ["tags.concepts.labels.doggo", "taxonomy", "'dog'"],
        ),
        ("[tags.clip.labels.beech]\nenabled = false\n", ["tags.clip.labels.beech", "'beach'"]),
        # nothing close: named, without a guess
        ("[tags.objects.labels.xyzzy]\nenabled = false\n", ["tags.objects.labels.xyzzy"]),
    ],
)
def test_unknown_labels_are_errors_with_the_closest_names(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_labels_of_your_own_prompt_sets_and_taxonomy_tags_are_known(tmp_path: Path) -> None:
    """Prompt sets and taxonomy tags you add are labels too (those groups are open)."""
    settings = load_text(
        tmp_path,
        """
[tags.clip.prompts.hiking]
prompts = ["a photo of people hiking"]
[tags.clip.labels.hiking]
threshold = 0.4
[tags.concepts.taxonomy.sailing]
classes = ["484"]
[tags.concepts.labels.sailing]
enabled = false
[tags.nsfw.labels.FACE_FEMALE]
enabled = false
""",
    )
    assert settings.tags.clip.labels["hiking"] == TagRule(threshold=0.4)
    assert settings.tags.concepts.labels["sailing"] == TagRule(enabled=False)


def test_labels_are_checked_against_the_default_set_before_any_model_is_installed(
    tmp_path: Path,
) -> None:
    """An empty models folder still knows the shipped default set: a typo in a
    label is caught before the first `tagd models fetch`."""
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(ConfigError, match="persn"):
        load_text(tmp_path, f'[runtime]\nmodels_dir = "{models}"\n[tags.objects.labels.persn]\n')


def test_labels_of_a_model_the_manifest_lacks_are_left_to_the_model_check(
    tmp_path: Path,
) -> None:
    """A model named in the config but in no manifest: loading the analyzer says
    what is missing, so the labels are not judged here."""
    models = tmp_path / "models"
    models.mkdir()
    settings = load_text(
        tmp_path,
        f'[runtime]\nmodels_dir = "{models}"\n[objects]\nmodel = "my-detector"\n'
        "[tags.objects.labels.anything]\n",
    )
    assert "anything" in settings.tags.objects.labels


def test_a_config_that_is_no_regular_file_is_refused_without_blocking(
    tmp_path: Path, state_dir: Path
) -> None:
    """A named pipe would block open() forever and /dev/zero never ends: both are
    refused at once with exit 2, as are a folder and an oversized file."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (2 << 20) + "\n")
    env = os.environ | {"TAGD_STATE_DIR": str(state_dir)}
    cases = [
        (fifo, "a named pipe"),
        (folder, "a folder"),
        (Path("/dev/zero"), "a character device"),
        (huge, "larger than 1024 KiB"),
    ]
    for path, needle in cases:
        start = time.monotonic()
        done = run_tagd("config", "check", path, env=env, timeout=30)
        assert done.returncode == 2, (path, done.stderr)
        assert str(path) in done.stderr and needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert time.monotonic() - start < 20
    # Any command, not only `config check`: the daemon's SIGHUP reload reads it the same way.
    done = run_tagd("--config", fifo, "status", env=env, timeout=30)
    assert done.returncode == 2 and "a named pipe" in done.stderr, done.stderr


# ---------------------------------------------------------------- every problem at once


def test_every_problem_is_reported_each_on_its_own_line(tmp_path: Path, cli) -> None:
    """A file with three typos is fixed in one pass: `config check` prints one line
    per problem, each naming the file; the error itself stays one line (logs,
    the service status)."""
    text = '[runtime]\nbatch_size = "8"\nbackend = "gpu"\n[library]\nrootz = []\n'
    path = write_config(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "\n" not in str(info.value)
    assert len(info.value.lines) == 3
    code, out, err = cli("config", "check", path)
    assert code == 2 and not out
    lines = err.splitlines()
    assert len(lines) == 3, err
    for line, needle in zip(
        sorted(lines), ["library.rootz", "runtime.backend", "runtime.batch_size"], strict=True
    ):
        assert line.startswith(f"tagd: {path}: {needle}"), line


def test_source_is_not_a_key_of_the_file(tmp_path: Path) -> None:
    """Where the settings came from is set by loading, never by the file."""
    with pytest.raises(ConfigError, match="source: unknown key; allowed in the top level"):
        load_text(tmp_path, 'source = "/etc/passwd"\n')


def test_the_schema_has_every_key_with_its_range() -> None:
    """The settings' JSON schema (what an HTTP client validates against) forbids
    unknown keys and bounds every number, so nan is refused everywhere."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(Settings).json_schema()
    assert "source" not in schema["properties"]
    numbers = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            if node.get("type") in ("number", "integer"):
                numbers.append(path)
                assert "minimum" in node or "maximum" in node, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(schema, "")
    assert len(numbers) > 50


def test_settings_load_without_the_tag_policy() -> None:
    """The settings are shared by everything (the policy itself, an HTTP API);
    only checking tag rules needs the policy, and it is imported for that."""
    import subprocess
    import sys

    code = (
        "import sys, tagd.config\n"
        "assert not [m for m in sys.modules if m.startswith('tagd.policy')], sys.modules\n"
        "tagd.config.parse_settings({})\n"
        "assert 'tagd.policy.validate' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
