"""`kcr init [DIR]`: a new connectors repository in one step: kcr.yaml with two environments (staging and
production), one example connector that validates, `.gitignore` with `.kcr/`, and the `.gitlab-ci.yml` a
team copies (templates/gitlab-ci.yml; kcr's own pipeline is that file plus kcr's tests, which
tests/test_gitlab_ci.py checks). Then it prints what to set in GitLab, since the pipeline works only once
those variables exist.

The files are package data (reconciler/templates/), text with comments rather than YAML emitted from
data: they are read by people first. The only substitution is kcr's own version, so that the pipeline
installs the kcr that wrote it (`KCR_VERSION`) and a later kcr never changes a team's checks unasked.

Nothing is overwritten without `--force`: every file is checked before any is written, so a refusal
writes nothing and names every file in the way. `.gitignore` is the exception in the other direction:
it is never replaced, even with `--force`; `.kcr/` is appended when missing, since a repository's
ignores are not kcr's to drop."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from reconciler import __version__
from reconciler.errors import ConfigError
from reconciler.files import write_atomic

VERSION_MARK = "@KCR_VERSION@"
GITIGNORE = ".gitignore"
# Where each template goes, in the order they are reported.
FILES: dict[str, str] = {
    "kcr.yaml": "kcr.yaml",
    "connectors/default/example.yaml": "example.yaml",
    GITIGNORE: "gitignore",
    ".gitlab-ci.yml": "gitlab-ci.yml",
}
ENVIRONMENTS = ("staging", "production")
SECRET_VARIABLES = ("SLACK_WEBHOOK_URL",)  # what the example connector's secrets reference
_IGNORES_KCR = re.compile(r"^/?\.kcr/?\s*$", re.MULTILINE)
_SAFE_VERSION = re.compile(r"^[0-9A-Za-z.+!-]+$")


@dataclass
class Scaffolded:
    """What `scaffold` did, for the report: files written, and whether .gitignore got `.kcr/`."""

    root: Path
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    gitignore_appended: bool = False


def template(name: str) -> str:
    """One template's text, kcr's version filled in."""
    if not _SAFE_VERSION.match(__version__):  # never true for a released kcr; fail closed if ever it is
        raise ConfigError(f"kcr's version {__version__!r} cannot be written into a pipeline")
    text = (resources.files("reconciler") / "templates" / name).read_text(encoding="utf-8")
    return text.replace(VERSION_MARK, __version__)


def scaffold(root: Path, *, force: bool = False) -> Scaffolded:
    """Write the repository's files under `root` (created if needed). ConfigError, and nothing
    written, when one exists and `force` is not given, or `root` is not a directory."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: is a file, not a directory; give `kcr init` a directory (or none: the current one)")
    existing = [rel for rel in FILES if rel != GITIGNORE and _exists(root / rel)]
    if existing and not force:
        raise ConfigError(
            f"{_shown(root)}: {', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; `kcr init` "
            "never overwrites a file. Move them away, or run `kcr init --force` to replace them (.gitignore is "
            "never replaced, only given `.kcr/`). Nothing was written.")
    done = Scaffolded(root)
    for rel, name in FILES.items():
        path = root / rel
        if rel == GITIGNORE and _exists(path):
            done.gitignore_appended = _add_kcr_ignore(path)
            continue
        try:
            if rel in existing:
                write_atomic(path, template(name), durable=False)  # --force: replaces a symlink, not its target
                done.replaced.append(rel)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("x", encoding="utf-8") as handle:  # "x": a file that appeared meanwhile stays
                    handle.write(template(name))
                done.written.append(rel)
        except FileExistsError:
            raise ConfigError(f"{path}: appeared while `kcr init` ran; not overwritten. Written: "
                              f"{', '.join(done.written) or 'nothing'}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc}). Written: "
                              f"{', '.join(done.written) or 'nothing'}") from None
    return done


def _shown(root: Path) -> str:
    return f"{root} ({root.resolve()})" if not root.is_absolute() else str(root)


def _exists(path: Path) -> bool:
    """A file, a directory or a symlink (even a dangling one) at `path`: all are in the way."""
    return path.is_symlink() or path.exists()


def _add_kcr_ignore(path: Path) -> bool:
    """Append `.kcr/` to an existing .gitignore that does not ignore it yet; True when appended."""
    try:
        text = path.read_text(encoding="utf-8")
        if _IGNORES_KCR.search(text):
            return False
        with path.open("a", encoding="utf-8") as handle:
            handle.write(("" if text.endswith("\n") or not text else "\n") + template("gitignore"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot add `.kcr/` to it ({exc}); add the line yourself") from None
    return True


def report(done: Scaffolded) -> str:
    """What was written, then what to set in GitLab and do next."""
    lines = [f"kcr init: {_shown(done.root)}"]
    lines += [f"  wrote     {rel}" for rel in done.written]
    lines += [f"  replaced  {rel}" for rel in done.replaced]
    if done.gitignore_appended:
        lines.append(f"  added     .kcr/ to {GITIGNORE}")
    return "\n".join(lines) + "\n\n" + next_steps()


def next_steps() -> str:
    """The variables the written pipeline reads, where each comes from and how GitLab must hold it.
    tests/test_init.py checks that every variable the templates use is named here."""
    envs = " and ".join(f"`{name}`" for name in ENVIRONMENTS)
    secrets = ", ".join(SECRET_VARIABLES)
    return f"""Next:
  1. Try it here: `kcr validate`; `kcr demo` plans and applies it against two local sandboxes.
     Against a Kibana: KIBANA_URL=... KIBANA_API_KEY=... {SECRET_VARIABLES[0]}=... kcr plan --env staging
  2. In GitLab, Settings > CI/CD > Variables, for each environment ({envs}: the variable's
     environment scope):
       KIBANA_URL            that Kibana's base URL
       KIBANA_API_KEY        masked, not protected: a READ-ONLY key (plan and drift; merge-request
                             pipelines get no protected variable, and they plan with --no-secrets)
       KIBANA_APPLY_API_KEY  masked, protected: a key with ALL privileges on connectors (apply only)
       {secrets:<21} masked, protected: the example connector's secret (every ${{env:..}} of your
                             connectors' secrets, the same way)
     and once, for all environments:
       KCR_FINGERPRINT_KEY   masked, protected: a long random value (`openssl rand -hex 32`), kept: it
                             keys the record of applied secrets and signs saved plans
       KCR_GITLAB_TOKEN      masked: a project access token (role Reporter, scope api): plan and apply
                             comments on merge requests, drift issues
     The Kibana privileges of each key, with the role descriptor to create it: kcr's README,
     "Least privilege".
  3. Protect the `production` environment (Settings > CI/CD > Protected environments) to choose who may
     run its apply: it waits for a click, after staging's apply succeeded. (If GitLab then stops the
     merge requests' production plan as "deploying to a protected environment", gitlab-org/gitlab#300784,
     allow Developers to deploy and require an approval instead.)
  4. Add a pipeline schedule (Build > Pipeline schedules, on the default branch, e.g. hourly): it runs the
     drift jobs.
  5. Commit, push, and open a merge request: its pipeline validates and plans each environment.
"""
