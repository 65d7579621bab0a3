"""Sphinx extension of the lintf book.

- Every chapter is re-read (and so re-executed) on every build. Sphinx re-reads only
  notebooks whose file changed, and an edit to ``lintf`` changes none of them; re-executing
  is cheap because ``lintf``'s results store serves every result whose configuration and
  ``lintf`` source are unchanged, and recomputes exactly those that are not. No page ever
  shows a figure from stale code.
- The scorecard is read (executed) last: it only reads what the other chapters stored,
  and Sphinx would otherwise read the chapters in alphabetical order.
- Progress bars are turned off in the kernels the build starts (``LINTF_PROGRESS=0``): a
  page is no place for a half-drawn bar (a kernel draws none anyway unless
  ``LINTF_PROGRESS=1``: :mod:`lintf.progress`).
"""
import os


def _all_outdated(app, env, added, changed, removed):
    return [doc for doc in env.found_docs if doc not in added and doc not in changed]


def _scorecard_last(app, env, docnames):
    docnames.sort(key=lambda doc: doc == "scorecard")               # stable: the others keep their order


def setup(app):
    os.environ.setdefault("LINTF_PROGRESS", "0")
    app.connect("env-get-outdated", _all_outdated)
    app.connect("env-before-read-docs", _scorecard_last)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
