import ast

from operators.trace.values import canonical, render


def test_literals_round_trip():
    for value in [1, -2.5, "a'b\"c", b"\x00", None, True, [1, (2,), {"k": {3}}], (), set(), {1: [2]}]:
        text, cut = render(value)
        assert not cut
        assert ast.literal_eval(text) == value


def test_sets_render_in_a_stable_order():
    assert render({"b", "a", "c"})[0] == "{'a', 'b', 'c'}"
    assert render({3, 1, 2})[0] == "{1, 2, 3}"


def test_objects_are_type_tagged_without_addresses():
    class Point:
        def __init__(self):
            self.x, self.y = 1, [2]

    text, _ = render(Point())
    assert text == "<Point x=1, y=[2]>"
    assert "0x" not in render(lambda: 0)[0]
    assert "0x" not in render(object())[0]


def test_cycles_and_caps_are_flagged():
    loop = [1]
    loop.append(loop)
    assert render(loop)[0] == "[1, [...]]"
    text, cut = render(list(range(1000)), limit=20)
    assert cut and text.endswith("…") and len(text) == 21


def test_canonical_normalises_spacing_and_rejects_non_literals():
    assert canonical("[1,2 ,  3]") == "[1, 2, 3]"
    assert canonical("f(1)") is None
