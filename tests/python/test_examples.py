"""examples/python: the listener/client pair runs with stock CPython on one
side and mpconn on the other (only the import line changed), both ways."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT, machine_python3

EXAMPLES = os.path.join(ROOT, "examples", "python")
EXPECTED = ("Player Data Received: {'name': 'Alice', 'level': 42, 'score': 1337.5, "
            "'inventory': ['sword', 'shield', 'potion'], 'position': (10, -3), 'online': True}")


def variant(name, use_mpconn, tmp_path):
    """The example as shipped (stock) or with only its import changed."""
    path = os.path.join(EXAMPLES, name)
    if not use_mpconn:
        return path
    with open(path) as f:
        text = f.read()
    cls = "Listener" if name == "listener.py" else "Client"
    stock_import = "from multiprocessing.connection import %s\n" % cls
    assert text.count(stock_import) == 1
    out = tmp_path / ("mpconn_" + name)
    out.write_text(text.replace(stock_import, "from mpconn import %s\n" % cls))
    return str(out)


def env_for(use_mpconn):
    env = dict(os.environ)
    if not use_mpconn:
        env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("listener_mpconn,client_mpconn", [(False, True), (True, False), (True, True)],
                         ids=["stock-listener-mpconn-client", "mpconn-listener-stock-client",
                              "mpconn-both"])
@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_the_player_data_example_runs_across_implementations(listener_mpconn, client_mpconn,
                                                             where, tmp_path):
    stock_python = machine_python3()
    ours = sys.executable
    address = "127.0.0.1:0" if where == "tcp" else str(tmp_path / "players.sock")
    key = "example key"
    listener = subprocess.Popen(
        [ours if listener_mpconn else stock_python,
         variant("listener.py", listener_mpconn, tmp_path), address, key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(listener_mpconn),
        universal_newlines=True,
    )
    try:
        first = listener.stdout.readline()
        assert first.startswith("Listening on "), first + listener.stderr.read()
        bound = ast.literal_eval(first[len("Listening on "):])
        client_address = "%s:%d" % bound if isinstance(bound, tuple) else bound
        client = subprocess.run(
            [ours if client_mpconn else stock_python,
             variant("client.py", client_mpconn, tmp_path), client_address, key],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(client_mpconn),
            universal_newlines=True, timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert "listener replied: thanks" in client.stdout
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert listener.returncode == 0, err
    assert EXPECTED in out.splitlines()


ECHO_REPLIES = ["reply: ('ok', 'ping')", "reply: ('ok', {'level': 42})",
                "reply: ('ok', b'\\x00\\xff\\x00\\xff\\x00\\xff')"]
STOCK_ECHO_CLIENT = """
import sys
from multiprocessing.connection import Client
address = sys.argv[1]
if ":" in address and "/" not in address:
    address = (address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1]))
with Client(address, authkey=b"example key") as conn:
    conn.send([1, "two"])
    print(conn.recv())
"""


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_the_asyncio_echo_example_serves_its_client_and_a_stock_one(where, tmp_path):
    import signal

    script = os.path.join(EXAMPLES, "asyncio_echo.py")
    address = "127.0.0.1:0" if where == "tcp" else str(tmp_path / "echo.sock")
    server = subprocess.Popen([sys.executable, script, "serve", address, "example key"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
    try:
        first = server.stdout.readline()
        assert first.startswith("Listening on "), first + server.stderr.read()
        bound = ast.literal_eval(first[len("Listening on "):])
        client_address = "%s:%d" % bound if isinstance(bound, tuple) else bound
        ours = subprocess.run([sys.executable, script, "client", client_address, "example key"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.splitlines() == ECHO_REPLIES
        stock = subprocess.run([machine_python3(), "-c", STOCK_ECHO_CLIENT, client_address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=60, env=env_for(False))
        assert stock.returncode == 0, stock.stderr
        assert stock.stdout == "('ok', [1, 'two'])\n"
        server.send_signal(signal.SIGINT)  # the example ends on Ctrl-C
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert out == "", out
    if where == "unix":
        assert not os.path.exists(address)
