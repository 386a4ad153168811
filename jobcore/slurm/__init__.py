"""Jobs on a Slurm cluster: the same job directory, our supervisor run by Slurm as the batch script.

Submitting (:mod:`.submit`), Slurm's record of a job (:mod:`.record`), the job's ``slurm.json``
(:mod:`.jobfile`), judging a job whose supervisor is on a node (:mod:`.liveness`), ending one
(:mod:`.cancel`) and the shared-storage probe (:mod:`.probe`). See ``docs/slurm.md``.
"""

from __future__ import annotations

#: The backends a job may run on; ``local`` is the default.
BACKENDS = ("local", "slurm")
#: How often a wait looks at a Slurm job's files: its supervisor is on another host, where
#: the wake FIFO cannot reach us, so an end is seen within this period.
POLL_S = 0.25
