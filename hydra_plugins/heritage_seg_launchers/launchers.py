"""Hydra submitit launchers with what a long encoder × fold sweep needs beyond the plugin's own.

- A job requeued after a timeout or preemption comes back with `resume=auto`, so it continues from its
  `last.ckpt` (or restarts in its own folder if it never got to one) instead of refusing that folder
  (submitit calls `checkpoint()` on SIGUSR1).
- Every job is waited for; one failed job never hides the others, and the sweep ends by listing each failed
  job with its overrides, run folder and log files.
- The sweep ends by printing each finished job's checkpoint (or run folder) as an option to paste into the next
  command, and the `aggregate` command for the sweep.
- Locally, jobs run `local_sweep_parallelism` at a time (default 1): parallel training jobs on a few CPU
  cores only thrash.

`launch()` is adapted from hydra-submitit-launcher 1.2.0's BaseSubmititLauncher.launch (MIT licence): the
plugin submits and then stops at the first failure, and has no concurrency limit for local jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

from heritage_seg.core.cli import override, shown_path
from heritage_seg.runs.folder import BEST
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

log = logging.getLogger(__name__)


def with_resume(overrides: Sequence[str]) -> list[str]:
    """auto: continue from last.ckpt when the job got that far, else start again in the same folder."""
    return [o for o in overrides if not o.lstrip("+~").startswith("resume=")] + ["resume=auto"]


class _SweepLauncher(BaseSubmititLauncher):
    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this job (timeout / preemption) so that it resumes from its last.ckpt."""
        import submitit

        overrides, *rest = args
        return submitit.helpers.DelayedSubmission(self, with_resume(overrides), *rest, **kwargs)

    def _executor(self):
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{(k if k in base else f"{self._EXECUTOR}_{k}"): v for k, v in self.params.items() if k not in init_keys}
        )
        return executor

    def _batch_size(self, num_jobs: int) -> int:
        return num_jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        executor = self._executor()
        params = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))

        results: list[JobReturn] = []
        failed: list[str] = []
        step = max(1, self._batch_size(len(params)))
        for start in range(0, len(params), step):
            chunk = params[start : start + step]
            jobs = executor.map_array(self, *zip(*chunk))
            for job, job_params in zip(jobs, chunk):
                overrides = job_params[0]
                try:
                    result = job.results()[0]
                except Exception as err:  # killed, out of memory, node failure: submitit raises
                    result = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=err)
                if result.status != JobStatus.COMPLETED:
                    run_dir = (
                        OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
                    )
                    failed.append(
                        f"  {' '.join(filter_overrides(overrides))}\n"
                        f"    run folder: {run_dir or '(not created)'}\n"
                        f"    error: {type(result._return_value).__name__}: {result._return_value}\n"
                        f"    logs: {job.paths.stdout}  {job.paths.stderr}"
                    )
                results.append(result)
        if failed:
            log.error("%d of %d job(s) failed:\n%s", len(failed), len(results), "\n".join(failed))
        else:
            log.info("all %d job(s) finished", len(results))
        finished = [_where(result) for result in results if result.status == JobStatus.COMPLETED and result.hydra_cfg]
        if finished:
            log.info("finished runs:\n%s", "\n".join(finished))
            log.info("summary: python -m heritage_seg.aggregate %s", override("runs", shown_path(sweep_dir)))
        return results


def _where(result: JobReturn) -> str:
    """One finished job: its overrides and its best checkpoint (or run folder) as an option to paste on."""
    run_dir = Path(str(OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir")))
    best = run_dir / BEST
    where = override("ckpt", shown_path(best)) if best.is_file() else shown_path(run_dir)
    return f"  {' '.join(filter_overrides(result.overrides or []))}: {where}"


class SlurmLauncher(_SweepLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_SweepLauncher):
    _EXECUTOR = "local"

    def _batch_size(self, num_jobs: int) -> int:
        assert self.config is not None
        return int(self.config.get("local_sweep_parallelism") or 1)
