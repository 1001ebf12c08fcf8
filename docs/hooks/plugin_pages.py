"""mkdocs hook: every plugin package's README.md (``plugins/<kind>/<name>/README.md``) becomes a
page of the site at build time, under the same path, so the READMEs stay the one source (nothing
is copied into docs/). The files a README links to inside the repository (its ``docs/`` figures
and result tables, another plugin's README) are added beside it, so relative links work on the
site as on GitHub, and a link to a file that does not exist still fails ``mkdocs build --strict``.

The nav's "Plugins" section gets one entry per package, titled by its folder name and grouped
by kind, after the pages mkdocs.yml lists there.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

KINDS = {"methods": "Methods", "tasks": "Tasks", "models": "Models"}
NAV_SECTION = "Plugins"
# Inline links and images: [text](target) / ![alt](target), the text possibly over lines.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _readmes(root: Path) -> list[Path]:
    return sorted(path for kind in KINDS for path in (root / "plugins" / kind).glob("*/README.md"))


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append the plugin pages to the nav's "Plugins" section."""
    root = _root(config)
    for entry in config.nav or []:
        if isinstance(entry, dict) and NAV_SECTION in entry:
            section = entry[NAV_SECTION]
            for kind, title in KINDS.items():
                pages = [
                    {path.parent.name: path.relative_to(root).as_posix()}
                    for path in _readmes(root)
                    if path.parent.parent.name == kind
                ]
                if pages:
                    section.append({title: pages})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    added: set[str] = set()
    for readme in _readmes(root):
        _add(files, config, root, readme.relative_to(root).as_posix(), added)
        for target in _linked(readme, root, seen=set()):
            if (root / target).is_dir():
                _add_folder(files, config, root, target, added)
            else:
                _add(files, config, root, target, added)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """A README's link to a folder (``[docs/](docs/)``) points at the folder's page."""
    if not page.file.src_uri.startswith("plugins/"):
        return markdown
    root = _root(config)
    here = posixpath.dirname(page.file.src_uri)

    def to_index(match: re.Match[str]) -> str:
        target = match.group(1)
        path = posixpath.normpath(posixpath.join(here, target.split("#", 1)[0]))
        if target.endswith("/") and (root / path).is_dir():
            return match.group(0).replace(target, f"{target}index.md", 1)
        return match.group(0)

    return LINK.sub(to_index, markdown)


def _add(files: Files, config: MkDocsConfig, root: Path, source: str, added: set[str]) -> None:
    if source in added or files.get_file_from_path(source) is not None:
        return
    added.add(source)
    files.append(File.generated(config, source, abs_src_path=str(root / source)))


def _add_folder(
    files: Files, config: MkDocsConfig, root: Path, folder: str, added: set[str]
) -> None:
    """A linked folder (``docs/``): its files, and a page listing them unless it has one."""
    entries = sorted(p for p in (root / folder).iterdir() if p.is_file())
    for path in entries:
        _add(files, config, root, path.relative_to(root).as_posix(), added)
    index = f"{folder}/index.md"
    if any(p.name in ("index.md", "README.md") for p in entries) or index in added:
        return
    added.add(index)
    listing = "\n".join(f"- [{p.name}]({p.name})" for p in entries)
    content = f"# {folder}/\n\nThe files in `{folder}/` of the repository:\n\n{listing}\n"
    files.append(File.generated(config, index, content=content))


def _linked(page: Path, root: Path, *, seen: set[Path]) -> list[str]:
    """Repository files and folders that `page` links to by a relative path, and those that
    linked Markdown files link to in turn."""
    seen.add(page)
    here = page.parent.relative_to(root).as_posix()
    found = []
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        target = match.group(1).split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            continue
        path = posixpath.normpath(posixpath.join(here, target))
        if path.startswith("..") or not (root / path).exists():
            continue  # mkdocs reports it as a broken link
        found.append(path)
        if path.endswith(".md") and root / path not in seen:  # e.g. its figures
            found.extend(_linked(root / path, root, seen=seen))
    return found
