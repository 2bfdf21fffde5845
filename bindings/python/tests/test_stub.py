"""`_native.pyi` and the compiled `felix._native` name the same things with the same
parameters, so the stub cannot drift from the Rust code."""

import ast
import inspect
from pathlib import Path

from felix import _native

STUB = Path(_native.__file__).parent / "_native.pyi"


def _params(fn: ast.FunctionDef):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return names + [x.arg for x in a.kwonlyargs]


def _runtime_params(obj):
    sig = inspect.signature(obj)
    return [p for p in sig.parameters if p not in ("self", "cls", "$self", "$cls")]


def _stub():
    tree = ast.parse(STUB.read_text())
    funcs, classes, consts = {}, {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            members = {}
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    props = any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list)
                    members[m.name] = ("property" if props else "method", m)
            classes[node.name] = members
        elif isinstance(node, ast.AnnAssign) and not node.target.id.startswith("_"):
            consts.add(node.target.id)
    return funcs, classes, consts


def test_stub_names_match_the_native_module():
    funcs, classes, consts = _stub()
    public = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert public == set(funcs) | set(classes) | consts | {"__version__"}


def test_stub_signatures_match():
    funcs, classes, _ = _stub()
    for name, fn in funcs.items():
        assert _runtime_params(getattr(_native, name)) == _params(fn), name
    for cname, members in classes.items():
        cls = getattr(_native, cname)
        runtime = {n for n in dir(cls) if not n.startswith("_")}
        stubbed = {n for n in members if not n.startswith("_")}
        assert runtime == stubbed, cname
        for mname, (kind, fn) in members.items():
            attr = inspect.getattr_static(cls, mname)
            if kind == "property":
                assert not callable(attr) or hasattr(attr, "__get__"), (cname, mname)
                continue
            target = cls if mname == "__new__" else getattr(cls, mname)
            assert _runtime_params(target) == _params(fn), (cname, mname)
