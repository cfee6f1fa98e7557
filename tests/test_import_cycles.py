"""The package's modules import each other without cycles, counting imports inside functions as
well as at module level, and the reader does not reach into the retriever's training loop or
evaluator. An AST walk over dpr_jax/, no import executed."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dpr_jax"


def _modules(root: Path) -> dict[str, Path]:
  out = {}
  for p in root.rglob("*.py"):
    parts = list(p.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = p
  return out


def import_graph(root: Path) -> dict[str, set[str]]:
  """module -> the package modules it imports anywhere in its text. `from a.b import c` names
  the module a.b.c where that is a module, else a.b; a name below a module is that module."""
  mods = _modules(root)

  def resolve(name):
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for m, path in mods.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                 else node.module for a in node.names]
      else:
        continue
      edges |= {t for t in map(resolve, names) if t and t != m}
    graph[m] = edges
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan), each sorted."""
  index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_cycle_finder_finds_cycles_by_hand(tmp_path):
  """a -> b (module level), b -> c and c -> a (inside functions): one cycle; d -> a is not."""
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg import b\n")
  (pkg / "b.py").write_text("def f():\n  from pkg.c import g\n")
  (pkg / "c.py").write_text("def g():\n  import pkg.a\n")
  (pkg / "d.py").write_text("from pkg.a import x\n")
  graph = import_graph(pkg)
  assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
  assert graph["pkg.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
  assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
  (pkg / "c.py").write_text("def g():\n  pass\n")
  assert cycles(import_graph(pkg)) == []


def test_no_import_cycles_in_the_package():
  found = cycles(import_graph(PACKAGE))
  assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_reader_does_not_import_the_retrievers_training_or_evaluation():
  graph = import_graph(PACKAGE)
  banned = {"dpr_jax.training.loop", "dpr_jax.retrieval.evaluate", "dpr_jax.retrieval.mine",
            "dpr_jax.retrieval.searcher", "dpr_jax.tools.serve"}
  hits = {m: sorted(graph[m] & banned) for m in graph if m.startswith("dpr_jax.reader.")}
  assert {m: h for m, h in hits.items() if h} == {}
  # and the retrieval layer does not import the reader (the Answerer lives in reader/)
  up = {m: sorted(t for t in graph[m] if t.startswith("dpr_jax.reader")) for m in graph
        if m.startswith("dpr_jax.retrieval.")}
  assert {m: h for m, h in up.items() if h} == {}
