"""A corpus of attacks on the sandbox, each a strategy a hostile user could save.

`layer` says where the attack must be stopped first: "static" (the checker refuses it before
anything runs), or "os" (only the isolated process can stop it: loops, memory, sleeping, huge
output). Every "static" attack is also run with the static check switched off, to show the
restricted runtime stops it on its own; the "os" ones run in the real sandbox process.
`target` names a file the attack tries to write, to check it was not written.
"""

from __future__ import annotations

from dataclasses import dataclass

PWN_FILE = "/tmp/quantdesk-sandbox-pwned"  # noqa: S108 (the attacks aim at a fixed path)


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    layer: str = "static"
    target: str | None = None


def _bar(body: str, header: str = "import numpy as np\nimport pandas as pd\n") -> str:
    """A strategy whose handle_bar runs `body` on the first bar."""
    indented = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return f"{header}\ndef handle_bar(ctx, data):\n{indented}"


ATTACKS: tuple[Attack, ...] = (
    # --- imports outside the allowlist
    Attack("import os", _bar("import os\nos.system('id')")),
    Attack("import sys", _bar("import sys\nsys.modules['os'].system('id')")),
    Attack("import subprocess", _bar("import subprocess\nsubprocess.run(['id'])")),
    Attack("import socket", _bar("import socket\nsocket.create_connection(('1.1.1.1', 80))")),
    Attack("import ctypes", _bar("import ctypes\nctypes.CDLL(None).system(b'id')")),
    Attack("import importlib", _bar("import importlib\nimportlib.import_module('os')")),
    Attack("import pickle", _bar("import pickle\npickle.loads(b'x')")),
    Attack("import marshal", _bar("import marshal\nmarshal.loads(b'x')")),
    Attack("import builtins", _bar("import builtins\nbuiltins.open('/etc/passwd')")),
    Attack("import threading", _bar("import threading\nthreading.Thread(target=print).start()")),
    Attack("from numpy import load", _bar("from numpy import load\nload('x.npy')")),
    Attack("import numpy.f2py", _bar("import numpy.f2py\nnumpy.f2py.compile('x')")),
    Attack("__import__", _bar("__import__('os').system('id')")),
    # --- dunder walks
    Attack("subclasses walk", _bar("x = ().__class__.__mro__[1].__subclasses__()")),
    Attack("function globals", _bar("def f():\n    pass\nx = f.__globals__")),
    Attack("builtins dict", _bar("x = __builtins__")),
    Attack("code object", _bar("x = (lambda: 0).__code__")),
    # --- frames through generators, coroutines and tracebacks
    Attack("generator frame", _bar("g = (i for i in [1])\nx = g.gi_frame.f_back.f_globals")),
    Attack(
        "traceback frame",
        _bar("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    x = e.__traceback__.tb_frame"),
    ),
    Attack("with_traceback", _bar("e = ValueError()\nx = e.with_traceback")),
    Attack(
        "coroutine frame", "async def f():\n    pass\n\ndef handle_bar(ctx, data):\n    x = f()"
    ),
    # --- format strings and computed names
    Attack("str.format dunder", _bar("x = '{0.__class__}'.format(1)")),
    Attack("str.format frame", _bar("g = (i for i in [1])\nx = '{0.gi_frame}'.format(g)")),
    Attack("f-string private", _bar("x = f'{ctx._s}'")),
    Attack("getattr computed", _bar("x = getattr(np, 'lo' + 'ad')('x.npy')")),
    Attack("getattr dunder", _bar("x = getattr(ctx, '_' + 's')")),
    Attack("look-alike eval", _bar("x = \uff45\uff56\uff41\uff4c('1')")),
    Attack("eval", _bar("eval('1')")),
    Attack("exec", _bar("exec('x = 1')")),
    Attack("compile", _bar("compile('1', 's', 'eval')")),
    Attack("open", _bar(f"open('{PWN_FILE}', 'w').write('x')"), target=PWN_FILE),
    Attack("globals", _bar("x = globals()")),
    Attack("vars", _bar("x = vars()")),
    Attack("type() class", _bar("x = type('X', (), {})")),
    Attack("breakpoint", _bar("breakpoint()")),
    # --- the OS through numpy and pandas
    Attack("np.load pickle", _bar("np.load('x.npy', allow_pickle=True)")),
    Attack("np.fromfile", _bar("x = np.fromfile('/etc/passwd', dtype=np.uint8)")),
    Attack("ndarray.tofile", _bar(f"np.zeros(3).tofile('{PWN_FILE}')"), target=PWN_FILE),
    Attack("np.ctypeslib", _bar("x = np.ctypeslib.load_library('libc', '/lib')")),
    Attack("np.f2py", _bar("x = np.f2py.subprocess")),
    Attack("np.ma builtins", _bar("x = np.ma.core.builtins")),
    Attack("pd.read_csv local", _bar("x = pd.read_csv('/etc/passwd')")),
    Attack("pd.read_csv url", _bar("x = pd.read_csv('http://203.0.113.1/x.csv')")),
    Attack(
        "DataFrame.to_csv",
        _bar(f"pd.DataFrame({{'a': [1]}}).to_csv('{PWN_FILE}')"),
        target=PWN_FILE,
    ),
    Attack("pd.eval", _bar("x = pd.eval('1 + 1')")),
    Attack("DataFrame.query", _bar("x = pd.DataFrame({'a': [1]}).query('a > 0')")),
    Attack("DataFrame.eval", _bar("x = pd.DataFrame({'a': [1]}).eval('a + 1')")),
    Attack("pd.io.common.os", _bar("pd.io.common.os.system('id')")),
    Attack("pd.errors.ctypes", _bar("x = pd.errors.ctypes")),
    Attack("pd.io.pickle", _bar("x = pd.io.pickle.pickle")),
    Attack(
        "statistics.sys",
        _bar("x = statistics.sys.modules", header="import statistics\n"),
    ),
    Attack("datetime.sys", _bar("x = datetime.sys", header="import datetime\n")),
    # --- tampering with the engine through ctx and data
    Attack("ctx private", _bar("ctx._s.book.cash = 1e12")),
    Attack("grant cash", _bar("ctx.cash = 1e12")),
    Attack("replace ctx method", _bar("ctx.order = None")),
    Attack("setattr", _bar("setattr(ctx, 'cash', 1e12)")),
    Attack("history base (the future)", _bar("x = data.history('AAA', 'close', 1).base")),
    Attack("delattr", _bar("delattr(ctx, 'order')")),
    # --- resource exhaustion: only the isolated process stops these
    Attack("infinite loop", _bar("while True:\n    pass"), layer="os"),
    Attack("memory bomb", _bar("x = [0] * (10 ** 10)"), layer="os"),
    Attack("sleep past timeout", _bar("while True:\n    ctx.now"), layer="os"),
    Attack("huge log", _bar("for i in range(10 ** 6):\n    ctx.log('x' * 1000)"), layer="os"),
    Attack(
        "gigantic state",
        _bar("ctx.state['x'] = ['y' * 1000] * 200000"),
        layer="os",
    ),
    Attack("non-serialisable state", _bar("ctx.state['f'] = len"), layer="os"),
    Attack(
        "deep recursion",
        _bar("def f(n):\n    return f(n + 1)\nf(0)"),
        layer="os",
    ),
)
