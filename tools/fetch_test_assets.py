"""Fetch the tokenizer test models that PyPI packages ship, into <venv>/test-assets.

SentencePiece models come from the `sentencepiece` source archive and the
`mistral-common` wheel, GPT-2's BPE ranks from the `openai-whisper` source
archive; all through `pip download`, never from a model hub. Without network the
script warns and exits 0: the tests that need the assets skip.

    python tools/fetch_test_assets.py [DEST]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# package spec, pip options, {member path suffix inside the archive: file name in DEST}
ASSETS = [
    (
        "sentencepiece==0.2.3",
        ["--no-binary", ":all:"],
        {
            "test/botchan_en_bpe_1000.model": "botchan_en_bpe_1000.model",
            "test/botchan_en_unigram_1000.model": "botchan_en_unigram_1000.model",
            "test/kyoto_ja_unigram_8000.model": "kyoto_ja_unigram_8000.model",
        },
    ),
    (
        "mistral-common==1.13.1",
        ["--only-binary", ":all:"],
        {"mistral_common/data/tokenizer.model.v1": "mistral_tokenizer_v1.model"},
    ),
    (
        "openai-whisper==20250625",
        ["--no-binary", ":all:"],
        {"whisper/assets/gpt2.tiktoken": "gpt2.tiktoken"},
    ),
]


def default_dest() -> str:
    """<sys.prefix>/test-assets, i.e. .venv/test-assets when run by the venv's python."""
    return os.path.join(sys.prefix, "test-assets")


def read_members(archive: str, suffixes: list[str]) -> dict[str, bytes]:
    """The first member of a .tar.gz or wheel (zip) ending with each suffix."""
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            blobs = {n: z.read(n) for n in z.namelist() if n.endswith(tuple(suffixes))}
    else:
        with tarfile.open(archive) as t:
            blobs = {
                m.name: t.extractfile(m).read()
                for m in t.getmembers()
                if m.isfile() and m.name.endswith(tuple(suffixes))
            }
    found = {}
    for suffix in suffixes:
        matches = sorted(n for n in blobs if n.endswith(suffix))
        if not matches:
            raise FileNotFoundError(f"{suffix} is not in {os.path.basename(archive)}")
        found[suffix] = blobs[matches[0]]
    return found


def main(dest: str) -> int:
    os.makedirs(dest, exist_ok=True)
    for spec, options, members in ASSETS:
        if all(os.path.exists(os.path.join(dest, target)) for target in members.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *options, spec, "-d", tmp]
            if subprocess.run(command).returncode != 0:
                print(f"fetch_test_assets: could not download {spec}; its tests will skip", file=sys.stderr)
                continue
            (archive,) = [os.path.join(tmp, name) for name in os.listdir(tmp)]
            for suffix, data in read_members(archive, list(members)).items():
                target = os.path.join(dest, members[suffix])
                with open(target + ".part", "wb") as out:
                    out.write(data)
                os.replace(target + ".part", target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default_dest()))
