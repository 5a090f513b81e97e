"""``actors.restate.install()``: ``import restate`` and its submodules resolve to
``actors.restate``; anything else under ``restate.`` fails clearly; the real SDK already
imported is refused. Each case runs in a subprocess: install() changes the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_restate_resolves_to_actors_restate() -> None:
    result = run(
        """
        import actors.restate
        actors.restate.install()
        actors.restate.install()  # again: a no-op
        import restate, restate.context, restate.exceptions, restate.serde
        from restate import Workflow, WorkflowContext
        from restate.context import ObjectContext
        from restate.exceptions import TerminalError
        from restate.serde import PydanticJsonSerde
        import restate.asyncio, restate.retry_policy, restate.workflow
        import actors.restate.context as ours
        assert restate is actors.restate
        assert restate.context is ours and ObjectContext is ours.ObjectContext
        assert TerminalError is actors.restate.TerminalError
        assert restate.asyncio.gather is actors.restate.gather
        assert restate.workflow.Workflow is Workflow
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_other_submodules_fail_clearly() -> None:
    result = run(
        """
        import actors.restate
        actors.restate.install()
        try:
            import restate.server
        except ModuleNotFoundError as exc:
            print(exc.name)
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    name, message = result.stdout.splitlines()[:2]
    assert name == "restate.server"
    assert "needs a Restate server" in message
    assert "restate.context" in message


def test_refuses_when_the_real_sdk_is_already_imported() -> None:
    result = run(
        """
        import restate  # the real SDK
        import actors.restate
        try:
            actors.restate.install()
        except ImportError as exc:
            print(exc)
        import sys
        print(sys.modules["restate"] is actors.restate)
        """
    )
    assert result.returncode == 0, result.stderr
    message, replaced = result.stdout.splitlines()[:2]
    assert "the real restate package (restate-sdk) is already imported" in message
    assert replaced == "False"  # nothing was changed


def test_serve_restate_refuses_the_real_sdk_already_imported() -> None:
    # `actors serve --restate` installs before it imports MODULE: with the real SDK
    # already imported it stops with the reason, before opening anything.
    result = run(
        """
        import sys
        import restate
        from actors._cli import main
        sys.exit(main(["serve", "--restate", "nothing:here", "--data", "/nonexistent/x"]))
        """
    )
    assert result.returncode == 1
    assert "already imported" in result.stderr
