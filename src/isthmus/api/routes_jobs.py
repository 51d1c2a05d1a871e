"""Synchronization jobs (list, create, show, run, pause, resume, cancel) and the server's
background tasks.

A run asked for here does not hold the request: it runs in a thread of the server (202,
with the task to poll) or, with ``?queue=true``, is handed to the workers (``isthmus
worker``). A job already running — here, in another process, or waiting to — is a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.params import Depends as DependsParam

from isthmus import commands, jobs, sync
from isthmus.api.app_state import ApiState, State
from isthmus.api.errors import Conflict, responses
from isthmus.api.models import Job, JobCreate, JobDetail, QueuedRun, RunAccepted, Task
from isthmus.api.params import ItemId, JobName
from isthmus.api.routes_data import checkpoint_progress
from isthmus.state.db_errors import NotFound
from isthmus.state.enums import JobStatus
from isthmus.state.models import SynchronizationJob
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore

Queue = Annotated[bool, Query(description="hand the run to the workers (`isthmus worker`) instead")]


def _job_key(job: SynchronizationJob) -> str:
    return f"job:{job.id}"


def start_run(state: ApiState, name: str, *, queue: bool, resume: bool) -> RunAccepted:
    """Check the job can run now, then start its run here or queue it."""
    with state.workspace() as ws:
        require_current(ws.engine, ws.state_schema)
        with ws.engine.connect() as conn:
            job = StateStore(ws.state_schema).get_job(conn, name)
        status = str(job.status)
        if resume and status != JobStatus.PAUSED:
            raise Conflict(f"job {job.job_name} is {status}, not paused: nothing to resume")
        if status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(
                f"job {job.job_name} is {status}: it cannot run again (a {status} job has no "
                "way out in the job state machine); create a new job"
            )
        if not queue:
            with ws.connect_target(autocommit=True) as lock_conn:
                if sync.run_in_progress(lock_conn, job.id):
                    raise Conflict(f"job {job.job_name} is running right now")
    if queue:
        run = commands.jobs_resume if resume else commands.jobs_run
        queued = run(state.config, job.job_name, queue=True)
        return RunAccepted(job=job.job_name, queued=QueuedRun.model_validate(queued.to_dict()))
    config, job_name = state.config, job.job_name
    task = state.tasks.start(
        "job_run",
        job_name,
        _job_key(job),
        (lambda: commands.jobs_resume(config, job_name))
        if resume
        else (lambda: commands.jobs_run(config, job_name)),
        busy=f"job {job_name} is being run by this server",
    )
    return RunAccepted(job=job_name, task=Task.model_validate(task.view()))


def router(auth: Sequence[DependsParam]) -> APIRouter:
    r = APIRouter()
    mutation = list(auth)

    @r.get("/jobs", tags=["jobs"], response_model=list[Job], responses=responses(503))
    def list_jobs(state: State) -> list[Job]:
        """Every job with its status, last/next run and statistics, by name."""
        with state.workspace() as ws:
            return [Job.model_validate(j) for j in jobs.list_jobs(ws)]

    @r.post(
        "/jobs",
        tags=["jobs"],
        status_code=201,
        dependencies=mutation,
        response_model=Job,
        responses=responses(400, 401, 409, 422, 503),
    )
    def create_job(state: State, body: JobCreate) -> Job:
        """A new job (status ``scheduled``); ``isthmus jobs create``."""
        with state.workspace() as ws:
            require_current(ws.engine, ws.state_schema)
            with ws.engine.connect() as conn:
                try:
                    StateStore(ws.state_schema).get_job(conn, body.name)
                except NotFound:
                    pass
                else:
                    raise Conflict(f"a job named {body.name!r} already exists")
        job = commands.jobs_create(
            state.config,
            body.name,
            body.type.value,
            entities=body.entities or None,
            direction=body.direction.value,
            conflict=body.conflict.value,
            cron=body.cron,
            batch_size=body.batch_size,
            validate=body.validate_after or None,
        )
        return Job.model_validate(job)

    @r.get(
        "/jobs/{name}", tags=["jobs"], response_model=JobDetail, responses=responses(404, 422, 503)
    )
    def show_job(state: State, name: JobName) -> JobDetail:
        """One job, its 20 newest checkpoints (with progress), how many of its records wait
        for review, and this server's newest run of it."""
        with state.workspace() as ws:
            detail = jobs.show_job(ws, name)
        return JobDetail(
            job=Job.model_validate(detail.job),
            recent_checkpoints=[
                checkpoint_progress(c, {detail.job.id: detail.job.job_name})
                for c in detail.checkpoints
            ],
            open_review_items=detail.open_review_items,
            task=_task_or_none(state.tasks.newest(_job_key(detail.job))),
        )

    @r.post(
        "/jobs/{name}/run",
        tags=["jobs"],
        status_code=202,
        dependencies=mutation,
        response_model=RunAccepted,
        responses=responses(400, 401, 404, 409, 422, 503),
    )
    def run_job(state: State, name: JobName, queue: Queue = False) -> RunAccepted:
        """Start a run (a paused job resumes): in this server, or by the workers with
        ``queue``. Poll ``GET /api/tasks/{id}`` or ``GET /api/jobs/{name}``."""
        return start_run(state, name, queue=queue, resume=False)

    @r.post(
        "/jobs/{name}/resume",
        tags=["jobs"],
        status_code=202,
        dependencies=mutation,
        response_model=RunAccepted,
        responses=responses(400, 401, 404, 409, 422, 503),
    )
    def resume_job(state: State, name: JobName, queue: Queue = False) -> RunAccepted:
        """paused → running: run it again from where its checkpoints stand."""
        return start_run(state, name, queue=queue, resume=True)

    @r.post(
        "/jobs/{name}/pause",
        tags=["jobs"],
        dependencies=mutation,
        response_model=Job,
        responses=responses(401, 404, 409, 422, 503),
    )
    def pause_job(state: State, name: JobName) -> Job:
        """running → paused: its run stops at the next batch boundary."""
        return _move(state, name, JobStatus.PAUSED)

    @r.post(
        "/jobs/{name}/cancel",
        tags=["jobs"],
        dependencies=mutation,
        response_model=Job,
        responses=responses(401, 404, 409, 422, 503),
    )
    def cancel_job(state: State, name: JobName) -> Job:
        """running → cancelled: its run stops at the next batch boundary, for good."""
        return _move(state, name, JobStatus.CANCELLED)

    @r.get("/tasks", tags=["tasks"], response_model=list[Task])
    def list_tasks(state: State) -> list[Task]:
        """This server's background work (job runs, validations), newest first; finished
        ones are remembered until the server stops (the newest 100)."""
        return [Task.model_validate(t) for t in state.tasks.all()]

    @r.get("/tasks/{task_id}", tags=["tasks"], response_model=Task, responses=responses(404, 422))
    def show_task(state: State, task_id: ItemId) -> Task:
        """One background task: running, done (with the CLI's --json result) or failed."""
        return Task.model_validate(state.tasks.get(task_id))

    return r


def _task_or_none(view: dict[str, object] | None) -> Task | None:
    return None if view is None else Task.model_validate(view)


def _move(state: ApiState, name: str, status: JobStatus) -> Job:
    """The job ``name`` moved to ``status`` (the state machine refuses illegal moves)."""
    with state.workspace() as ws:
        return Job.model_validate(jobs.set_status(ws, name, status))
