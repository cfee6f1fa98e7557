"""The README and docs/ stay true to the tree and to CI; the repository speaks of the software only."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Phrases that describe how the repository was made rather than what the software does (that
# belongs in git log and CHANGELOG.md). Bare words with a software meaning (pytest's and HTTP's
# "session") are matched only in the phrases that are not that meaning.
HISTORY_PATTERNS = [
    r"\bsessions?\s+\d+\b",                                     # "session 3"
    r"\b(this|that|earlier|previous|later|next|last|other|two|three|each) sessions\b",
    r"\b(this|that|earlier|previous|later|next|last|other|same) session\b(?!\s*(cookie|id|token|object|state|storage|data|scope|key|=))",
    r"\b(in|by|for|to) (a |the )?(later |earlier |previous |next )?session\b(?!\s*(cookie|id|token|object|state|storage|data|scope|key|=))",
    r"\bsession's\b",
    r"\bleases?\b",
    r"\bborrowed\b",
    r"\blent\b",
    r"\bwork(ing)? periods?\b",
    r"\bgoals?\b",
    r"\btickets?\b",
    r"\bissue\s*#\s*\d+",
    r"\bissues?\s+\d+\b",                                       # "issue 13"
    r"\bissue's\b",                                             # "the GPU targets"
    r"\b(filed|opened|closed|resolved)( in| as)? (an |the |this )?(issue|ticket|bug report)s?\b",
    r"\b(before|after|since)\s+(this|that|the)\s+(\w+\s+)?(change|session|commit|fix|rewrite)s?\b",
    r"\bwhat changed\b",
    r"\bpredates?\b",
    r"\btargets? (was|were) (not|never) (reached|met)\b",          # past tense: a story
    r"\bmissed (the|its|our|their) (\w+ )?targets?\b",
]
HISTORY_RE = re.compile("|".join(f"(?:{p})" for p in HISTORY_PATTERNS), re.IGNORECASE)
# File names that number work periods ("cpu_s3_...").
HISTORY_NAME_RE = re.compile(r"(^|[_./-])(s|session|round|period)\d+([_./-]|$)", re.IGNORECASE)


def _tracked_files():
  p = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
  if p.returncode != 0:
    pytest.skip(f"not a git checkout: {p.stderr.decode(errors='replace').strip()}")
  return [f for f in p.stdout.decode().split("\0") if f]


def _text(path):
  try:
    return path.read_bytes().decode("utf-8")
  except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
    return None  # binary (a PNG) or a path deleted in the work tree


def history_hits(text):
  """-> [(line number, matched text)] for each development-history phrase in `text`."""
  return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1)
          for m in HISTORY_RE.finditer(line)]


@pytest.mark.parametrize("text,hit", [
    ("session 3", "session 3"),
    ("predate", "predate"),
    ("lent", "lent"),
    ("lease", "lease"),
    ("borrowed", "borrowed"),
    ("goals", "goals"),
    ("target was not reached", "target was not reached"),
    ("missed its throughput target", "missed its throughput target"),
    ("work periods", "work periods"),
    ("ticket 7", "ticket"),
    ("issue #12", "issue #12"),
    ("issue 13", "issue 13"),
    ("issue's", "issue's"),
    ("filed in an issue", "filed in an issue"),
    ("before this change", "before this change"),
    ("earlier sessions", "earlier sessions"),
    ("given to the session", "to the session"),
    ("what changed", "what changed"),
])
def test_history_vocabulary_is_caught(text, hit):
  assert hit in [h for _, h in history_hits(text)]


@pytest.mark.parametrize("text", [
    '@pytest.fixture(scope="session")',
    "requests.Session() keeps one HTTP session per client",
    "the session cookie is signed",
    "an HTTP session id",
    "pip install --upgrade; see the release notes",
    "python -m dpr_jax.retrieve --k 100",
    "a known issue with cuDNN when the batch is empty",
    "see the known issues.",
    "error: precondition not met",
    "the build target is not reached when --skip is given",
    "the session data is kept in session storage",
    "the performance issues of XLA:CPU",
    "2 CPU cores shared with other jobs",
])
def test_software_words_are_not_caught(text):
  assert history_hits(text) == []


def test_no_development_history_in_tracked_files():
  me = Path(__file__).resolve().relative_to(REPO).as_posix()
  found = []
  for name in _tracked_files():
    if HISTORY_NAME_RE.search(Path(name).name):
      found.append(f"{name}: file name")
    text = None if name == me else _text(REPO / name)
    if text is not None:
      found += [f"{name}:{n}: {hit!r}" for n, hit in history_hits(text)]
  assert not found, "development-history vocabulary (history belongs in git log):\n" + "\n".join(found)


def test_ci_runs_the_readme_test_command():
  readme = (REPO / "README.md").read_text()
  ci = (REPO / ".ci" / "run").read_text()
  cmd = "python -m pytest -q -p no:cacheprovider tests"
  assert f"XLA_FLAGS=--xla_force_host_platform_device_count=8 {cmd}" in readme
  assert "export XLA_FLAGS=--xla_force_host_platform_device_count=8" in ci
  assert ci.strip().splitlines()[-1] == cmd


def _quick_start(readme: str) -> list[str]:
  """The command lines of the first ```bash block of the README's "Quick start" section."""
  section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
  block = section.split("```bash\n", 1)[1].split("```", 1)[0]
  return [l for l in block.splitlines() if l.strip()]


def test_ci_runs_the_readme_quick_start():
  """The quick start is two commands, set-up then the demo; CI (.ci/run) runs each part of the
  set-up (quietly) and the demo, with an empty data folder so that the demo reads the slice
  embedded in the package."""
  setup, demo = _quick_start((REPO / "README.md").read_text())
  ci = [l.strip() for l in (REPO / ".ci" / "run").read_text().splitlines()
        if l.strip() and not l.startswith("#")]
  quiet = [" ".join(w for w in l.split() if w != "-q") for l in ci]
  for part in setup.split(" && "):
    assert part in quiet, f"set-up step {part!r} is not in .ci/run"
  assert demo == "python train.py --config configs/demo.py --workdir runs/demo"
  assert f'DPR_DATA_DIR="$(mktemp -d)" {demo}' in ci
  assert ci.index(f'DPR_DATA_DIR="$(mktemp -d)" {demo}') > quiet.index(setup.split(" && ")[-1])


def test_readme_is_a_short_manual():
  lines = (REPO / "README.md").read_text().splitlines()
  assert len(lines) <= 250, f"README.md has {len(lines)} lines; details belong in docs/"


# docs pages linked from README/docs that the tools documented there provide themselves.
PROVIDED_ELSEWHERE = ["data.md", "errors.md", "mesh-search.md", "service.md",
                      "export-sentence-transformers.md", "plots.md", "performance-real-data.md"]


def _anchors(md_text):
  """GitHub's anchors for the headings of a Markdown text (code blocks skipped)."""
  anchors, fenced = set(), False
  for line in md_text.splitlines():
    if line.startswith("```"):
      fenced = not fenced
    elif not fenced and re.match(r"#{1,6} ", line):
      title = line.lstrip("#").strip().lower()
      anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
  return anchors


def test_anchor_slugs_follow_github():
  assert _anchors("## Retrieving: `python -m dpr_jax.retrieve`\n```\n# not a heading\n```") == {
      "retrieving-python--m-dpr_jaxretrieve"}
  assert _anchors("### DPR's 21M passages") == {"dprs-21m-passages"}


def test_relative_links_resolve():
  """Every relative link in README.md, CHANGELOG.md and docs/*.md names a file of the tree (or one
  of the docs pages that the tools documented there bring with them), and every #anchor into a
  page of the tree names one of its headings."""
  pages = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
  missing = []
  for page in pages:
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
      if re.match(r"[a-z]+://|mailto:", target):
        continue
      path = (page.parent / target) if target else page
      if not path.exists():
        if Path(target).name not in PROVIDED_ELSEWHERE:
          missing.append(f"{page.relative_to(REPO)} -> {target}")
      elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
        missing.append(f"{page.relative_to(REPO)} -> {target}#{anchor}")
  assert not missing, "broken links:\n" + "\n".join(missing)


def test_module_map_covers_the_tree():
  design = (REPO / "docs" / "design.md").read_text()
  listed = set(re.findall(r"`(dpr_jax/[\w/]+\.py)`", design))
  present = {p.relative_to(REPO).as_posix() for p in (REPO / "dpr_jax").rglob("*.py")
             if p.name != "__init__.py"}
  assert present - listed == set(), "modules missing from docs/design.md's module map"
  stale = {m for m in listed - present if not (REPO / m).parent.is_dir()}
  assert stale == set(), "module map names packages that do not exist"


def test_package_imports_from_anywhere(tmp_path):
  p = subprocess.run([sys.executable, "-c", "import dpr_jax; print(dpr_jax.__version__)"],
                     cwd=tmp_path, capture_output=True, text=True)
  assert p.returncode == 0, p.stderr
