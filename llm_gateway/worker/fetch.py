"""Put a model file at a fixed path, once: what an init container runs to fill a model volume.

    python -m llm_gateway.worker.fetch SOURCE DEST

SOURCE is any worker model source (``default``, ``hf://owner/repo/file.gguf``, a path); DEST
is where the worker will find it (``--model DEST``). DEST is written atomically (a temporary
file, then a rename) beside a ``DEST.source`` note of what it came from, so a pod that restarts
finds it in place and does nothing, and a changed SOURCE replaces it. Hugging Face downloads go
through ``$HF_HUB_CACHE``: put that on the same volume and DEST is a hard link into the cache,
not a second copy.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from llm_gateway.worker.models import ModelSourceError, resolve_source

log = logging.getLogger("llm_gateway.worker")


def fetch(source: str, dest: Path) -> bool:
    """Make ``dest`` the model file of ``source``; False when it already was."""
    note = dest.with_name(dest.name + ".source")
    if dest.is_file() and note.is_file() and note.read_text().strip() == source:
        return False
    path = resolve_source(source).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(path, partial)
    except OSError:  # another filesystem (the image's site-packages), or no hard links
        shutil.copyfile(path, partial)
    os.replace(partial, dest)
    note.write_text(source + "\n")  # last: an interrupted fetch is redone
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_gateway.worker.fetch",
        description="Put the model file of SOURCE at DEST, unless it is there already.")
    parser.add_argument("source", help="default | hf://owner/repo/file.gguf | a .gguf path")
    parser.add_argument("dest", type=Path, help="where the worker reads it (--model DEST)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = fetch(args.source, args.dest)
    except (ModelSourceError, OSError) as exc:
        print(f"fetch: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {'written from' if written else 'already holds'} {args.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
