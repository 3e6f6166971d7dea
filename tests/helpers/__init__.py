"""What several test files share, so each fake or runner exists once (issue #12):

- `cli`: a repository from a {path: text} table, kcr run in-process (`reconciler.cli.main`, output from
  capsys) or as a real `python -m reconciler` process, and the environment such a process gets.
- `pipeline`: plan then apply in-process, as the CLI chains the stages, against any client.
- `transports`: an httpx handler that records every request before answering it.
- `applier_fakes`: stateful fakes of the applier's Protocols (client, resolver, record) and small
  Change and Plan builders.
- `builders`: DesiredState / LiveState built by hand (no mocks), and the mixed scenario behind the
  golden files.

pytest puts `tests/` on sys.path (it has no `__init__.py`), so test files import `helpers.<module>`.
A fake used by one test file only stays in that file."""
