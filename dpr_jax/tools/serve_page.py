"""The search page of `python -m dpr_jax.serve` (a Jinja template, rendered on the server, so
`/?q=...` shows results without scripts)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dpr-jax search{% if q %}: {{ q }}{% endif %}</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem;
        color: #222; }
 form { display: flex; gap: .5rem; margin-bottom: 1rem; }
 input[name=q] { flex: 1; font-size: 1.1rem; padding: .4rem; }
 input[name=k] { width: 4rem; font-size: 1.1rem; padding: .4rem; }
 button { font-size: 1.1rem; padding: .4rem 1rem; }
 .meta { color: #666; font-size: .9rem; }
 .answer { background: #eef6ee; border-left: 4px solid #3a3; padding: .6rem .8rem; margin: 1rem 0; }
 .answer b { font-size: 1.2rem; }
 .error { background: #fbeaea; border-left: 4px solid #c33; padding: .6rem .8rem; }
 ol { padding-left: 1.5rem; }
 li { margin-bottom: .9rem; }
 .title { font-weight: 600; }
 .score { color: #555; font-family: monospace; margin-left: .5rem; }
 .text { margin-top: .2rem; line-height: 1.4; }
 mark { background: #ffe066; padding: 0 .1rem; }
</style>
</head>
<body>
<h1>dpr-jax search</h1>
<form action="/" method="get">
 <input name="q" value="{{ q }}" placeholder="Ask a question" autofocus>
 <input name="k" type="number" min="1" max="{{ max_k }}" value="{{ k }}" title="passages">
 <button type="submit">Search</button>
</form>
<p class="meta">{{ retriever }} retrieval over {{ size }} passages{% if reader %}, with a
reader{% endif %}.</p>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if answer %}
<div class="answer">Answer: <b>{{ answer.text or "(none)" }}</b>
 <span class="meta">from passage {{ answer.passage_id }} (rank {{ answer.passage_rank + 1 }},
 span score {{ "%.3f"|format(answer.score) }})</span></div>
{% endif %}
{% if hits %}
<ol>
{% for h in hits %}
 <li><span class="title">{{ h.title }}</span><span class="score">{{ "%.4f"|format(h.score) }}</span>
  <span class="meta">#{{ h.pid }}</span>
  <div class="text">{% if answer and answer.start is not none and answer.passage_rank == loop.index0
  %}{{ h.text[:answer.start] }}<mark>{{ h.text[answer.start:answer.end] }}</mark>{{
  h.text[answer.end:] }}{% else %}{{ h.text }}{% endif %}</div></li>
{% endfor %}
</ol>
{% endif %}
</body>
</html>
"""
