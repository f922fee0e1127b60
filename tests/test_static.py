"""Static checks: banned APIs through aliases, loops through helpers, dynamic access."""
import ast

from runner import static

BANNED = dict(names=["torch.sigmoid", "torch.special.expit", "torch.nn.BatchNorm*"],
              attributes=["sigmoid", "expit"])


def findings(src, **kw):
    return [f.message for f in static.banned_uses(ast.parse(src), **(BANNED | kw))]


def test_banned_names_through_every_alias():
    assert findings("import torch\ny = torch.sigmoid(x)")
    assert findings("import torch as T\ny = T.sigmoid(x)")
    assert findings("from torch import sigmoid\n")
    assert findings("from torch import special as S\nS.expit(x)")
    assert findings("import torch\ns = torch.sigmoid\n")
    assert findings("import torch.nn as nn\nbn = nn.BatchNorm2d(3)")
    assert findings("x.sigmoid()")                        # Tensor.sigmoid on anything
    assert findings("getattr(x, 'sigmoid')()")


def test_allowed_code_is_not_flagged():
    assert not findings("import torch\ny = 1 / (1 + torch.exp(-x))")
    assert not findings("import torch.nn.functional as F\nF.logsigmoid(x)")
    assert not findings("self.sigmoid = MySigmoid.apply\ny = self.sigmoid(x)")
    assert not findings("ctx.sigmoid = out\ny = ctx.sigmoid * 2")     # the file's own attribute
    assert findings("ctx.other = out\ny = ctx.sigmoid * 2")


def test_dynamic_access_is_flagged():
    for src in ["eval('1')", "getattr(torch, 'sig' + 'moid')", "torch.__dict__['sigmoid']",
                "import importlib", "import sys\nsys.modules['torch']", "torch._C._nn",
                "import operator\noperator.attrgetter('scaled_dot_' + 'product')(F)",
                "from operator import methodcaller as m\nm('sigmoid')(x)",
                "import inspect\ninspect.getattr_static(F, 'batch' + '_norm')",
                "import functools\nfunctools.reduce(getattr, ['sigmoid'], torch)"]:
        assert static.dynamic_access(ast.parse(src)), src
    assert not static.dynamic_access(ast.parse("getattr(self, 'weight')"))


def test_loops_found_in_function_and_its_helpers():
    src = """
def helper(x):
    return [v for v in x]

def f(x):
    return helper(x)

def g(x):
    total = 0
    while total < 3:
        total += 1
    return list(map(abs, x))

class C:
    def method(self, x):
        for i in x:
            pass

def clean(x):
    return x.sum()
"""
    tree = ast.parse(src)
    assert "list comprehension (in helper, which f calls)" in str(static.loops_in(tree, "f"))
    msgs = str(static.loops_in(tree, "g"))
    assert "while loop" in msgs and "map" in msgs
    assert "for loop" in str(static.loops_in(tree, "C.method"))
    assert static.loops_in(tree, "clean") == []
