"""sync_agent.yaml_loader's bounds: aliases measured as if expanded, recursion refused,
nesting refused cleanly at every depth; ordinary anchors and merge keys still load."""

from __future__ import annotations

import json

import pytest

from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi",
                                                                  strict=True))


def test_a_billion_laughs_is_refused_before_anything_is_built():
    with pytest.raises(YAMLLimitError) as caught:
        load_documents(LAUGHS)
    assert "more than 10,000,000 YAML nodes" in caught.value.problem
    assert caught.value.document == 1


def test_anchors_and_merge_keys_within_the_bound_load_as_before():
    text = "base: &b {a: 1, b: [1, 2]}\nx:\n  <<: *b\n  c: 3\ny: [*b, *b]\n"
    (doc,) = load_documents(text)
    assert doc.data["x"] == {"a": 1, "b": [1, 2], "c": 3}
    assert json.loads(json.dumps(doc.data))["y"] == [{"a": 1, "b": [1, 2]}] * 2
    with pytest.raises(YAMLLimitError):
        load_documents(text, max_nodes=20)


def test_the_bound_counts_every_document_of_a_file():
    doc = "a: &x [1, 2, 3]\nb: [*x, *x, *x]\n"
    assert len(load_documents("---\n".join([doc] * 2), max_nodes=40)) == 2
    with pytest.raises(YAMLLimitError) as caught:
        load_documents("---\n".join([doc] * 3), max_nodes=40)
    assert caught.value.document == 3


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "- &l [1, [*l]]\n"])
def test_an_alias_inside_its_own_anchor_is_refused(text):
    with pytest.raises(YAMLLimitError, match="refers to a node that contains it"):
        load_documents(text)


@pytest.mark.parametrize("depth", [600, 999, 1000, 5000])
def test_deep_nesting_is_a_clean_error_at_every_depth(depth):
    with pytest.raises(YAMLSyntaxError, match="exceeded maximum nesting depth"):
        load_documents("a: " + "[" * depth + "]" * depth)


def test_moderate_nesting_loads():
    (doc,) = load_documents("a: " + "[" * 200 + "]" * 200)
    assert json.dumps(doc.data).count("[") == 200
