"""SageMaker training jobs on moto, run in-process by the training image's own entry point.

Two gaps, closed while the block runs:

- moto's Step Functions interpreter lists ``sagemaker`` as an unsupported integration (it
  would forward the call but knows no ``.sync``): ``arn:aws:states:::sagemaker:
  createTrainingJob.sync`` gets a task service here that creates the job and polls
  ``DescribeTrainingJob`` until it ends, as Step Functions does; a ``Failed`` or ``Stopped``
  job fails the task with ``States.TaskFailed`` and the description as its cause.
- moto's SageMaker records a training job as ``Completed`` at once and runs nothing. Here the
  job is ``InProgress`` while a thread lays out its channels as SageMaker does
  (``input/config/hyperparameters.json``; ``input/data/<channel>/``: an ``S3Prefix`` copied,
  a ``ManifestFile``'s keys downloaded to their relative paths), runs
  ``imgsearch_training.job.run`` (what ``docker run <image> train`` runs on AWS), tars
  ``model/`` to ``<S3OutputPath>/<job>/output/model.tar.gz``, and ends ``Completed``, or
  ``Failed`` with ``output/failure`` as its ``FailureReason``.

Tests and the local stack only::

    with training_jobs(lambda: boto3.client("s3")) as jobs:
        sfn.start_execution(stateMachineArn=retrain_arn, input="{}")
        jobs.finished            # names of the jobs that ran to an end
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session

from imgsearch.core.keys import split_s3_uri

logger = logging.getLogger(__name__)

TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


@dataclass
class TrainingJobs:
    """The jobs run while installed, for tests to wait on."""

    finished: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def wait(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)


def _download_prefix(s3: Any, uri: str, folder: Path) -> None:
    bucket, prefix = split_s3_uri(uri)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :].lstrip("/")
            if relative:
                (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(folder / relative))


def _download_manifest(s3: Any, uri: str, folder: Path) -> None:
    bucket, key = split_s3_uri(uri)
    entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    base_bucket, base = split_s3_uri(entries[0]["prefix"])
    for relative in entries[1:]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(base_bucket, base + relative, str(folder / relative))


def lay_out(s3: Any, job: Any, root: Path) -> None:
    """The job's ``/opt/ml`` under ``root``: its hyperparameters and every input channel."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters or {}))
    for channel in job.input_data_config:
        source = channel["DataSource"]["S3DataSource"]
        folder = root / "input" / "data" / channel["ChannelName"]
        folder.mkdir(parents=True)
        if source["S3DataType"] == "ManifestFile":
            _download_manifest(s3, source["S3Uri"], folder)
        else:
            _download_prefix(s3, source["S3Uri"], folder)
    (root / "model").mkdir()
    (root / "output").mkdir()


def run_job(s3: Any, job: Any) -> tuple[str, str]:
    """Run one job as the training image would: (status, failure reason)."""
    from imgsearch_training.job import run  # torch: imported only when a job runs

    with tempfile.TemporaryDirectory(prefix="imgsearch-training-") as name:
        root = Path(name)
        try:
            lay_out(s3, job, root)
            code = run(root)
        except Exception as exc:  # the container would have exited non-zero
            logger.exception("training job %s failed", job.training_job_name)
            return "Failed", f"{type(exc).__name__}: {exc}"
        if code != 0:
            failure = root / "output" / "failure"
            reason = failure.read_text() if failure.is_file() else f"exit code {code}"
            return "Failed", reason[:1024]
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted((root / "model").iterdir()):
                tar.add(path, arcname=path.name)
        bucket, key = split_s3_uri(job.model_artifacts["S3ModelArtifacts"])
        s3.upload_file(str(archive), bucket, key)
    return "Completed", ""


@contextmanager
def training_jobs(s3_client: Callable[[], Any]) -> Iterator[TrainingJobs]:
    """Run moto's training jobs in-process, and let Step Functions wait for them."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
        state_task_factory,
    )

    jobs = TrainingJobs()
    create = SageMakerModelBackend.create_training_job
    service_for = state_task_factory.state_task_service_for

    def create_training_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = create(self, *args, **kwargs)
        job.training_job_status = job.secondary_status = "InProgress"

        def work() -> None:
            status, reason = run_job(s3_client(), job)
            job.training_job_status = job.secondary_status = status
            if reason:
                job.failure_reason = reason
            jobs.finished.append(job.training_job_name)

        thread = threading.Thread(target=work, name=f"training-{job.training_job_name}")
        jobs.threads.append(thread)
        thread.start()
        return job

    def service(service_name: str) -> Any:
        if service_name == "sagemaker":
            return _sagemaker_service()
        return service_for(service_name=service_name)

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
    state_task_factory.state_task_service_for = service  # type: ignore[assignment]
    try:
        yield jobs
    finally:
        jobs.wait()
        SageMakerModelBackend.create_training_job = create  # type: ignore[method-assign]
        state_task_factory.state_task_service_for = service_for  # type: ignore[assignment]


def _sagemaker_service() -> Any:
    """moto's task-service class for ``sagemaker:createTrainingJob`` and its ``.sync``."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    def client_model() -> Any:
        return botocore.session.get_session().get_service_model("sagemaker")

    def client(part: Any, credentials: Any) -> Any:
        return boto_client_for(
            service="sagemaker", region=part.region, state_credentials=credentials
        )

    class StateTaskServiceSageMaker(StateTaskServiceCallback):
        def __init__(self) -> None:
            # WaitForTaskToken too: moto's callback code ends every pattern by interrupting the
            # task's callback endpoint, which it only creates when that pattern is supported.
            super().__init__(
                supported_integration_patterns={
                    ResourceCondition.Sync,
                    ResourceCondition.WaitForTaskToken,
                }
            )

        def _get_supported_parameters(self) -> set[str] | None:
            # What Step Functions takes for this integration: CreateTrainingJob's request.
            if self.resource.api_action.lower() != "createtrainingjob":
                return None
            return set(client_model().operation_model("CreateTrainingJob").input_shape.members)

        # Called with keywords: the parameter names are moto's.
        def _eval_service_task(
            self,
            env: Any,
            resource_runtime_part: Any,
            normalised_parameters: dict,
            state_credentials: Any,
        ) -> None:
            action = self._get_boto_service_action()
            sagemaker = client(resource_runtime_part, state_credentials)
            response = getattr(sagemaker, action)(**normalised_parameters)
            response.pop("ResponseMetadata", None)
            env.stack.append(response)

        def _build_sync_resolver(
            self,
            env: Any,
            resource_runtime_part: Any,
            normalised_parameters: dict,
            state_credentials: Any,
        ) -> Callable[[], Any]:
            env.stack.pop()
            name = normalised_parameters["TrainingJobName"]
            sagemaker = client(resource_runtime_part, state_credentials)

            def resolve() -> Any:
                described = sagemaker.describe_training_job(TrainingJobName=name)
                described.pop("ResponseMetadata", None)
                if described["TrainingJobStatus"] not in TERMINAL:
                    return None  # moto's loop waits before it asks again
                described = json.loads(json.dumps(described, default=str))
                if described["TrainingJobStatus"] == "Completed":
                    return described
                error = StatesErrorNameType.StatesTaskFailed.to_name()
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(
                            taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=error,
                                cause=json.dumps(described),
                            )
                        ),
                    )
                )

            return resolve

    return StateTaskServiceSageMaker()
