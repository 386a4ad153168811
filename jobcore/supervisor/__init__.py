"""What runs in a job's supervisor process: the supervisor and the modules it imports.

Standard library only, and nothing slow to import: a supervisor starts once per job under
``python -S -E`` and stays resident for the job's life, so its start-up time and memory are
paid for every job. The launcher (:mod:`jobcore.launch`) puts the ``jobcore/`` directory on
``sys.path`` and imports ``supervisor.main``, so this is a top-level package there and the
engine's package (pydantic) is never loaded. Modules here import each other relatively,
which works the same when the engine imports them as ``jobcore.supervisor.*``.
"""
