"""`dagster-k8s/config` run tags: how much of a node each job's run pod asks for.

K8sRunLauncher (deploy/helm/values.yaml) reads the tag when it creates a run's pod; every
other launcher ignores it, so the tags cost nothing on the embedded stack or compose. The
value is JSON text because run tags are strings (sensors copy them into RunRequests).
"""

import json

K8S_CONFIG_TAG = "dagster-k8s/config"


def k8s_resources_tag(cpu: str, memory: str) -> dict[str, str]:
    """Request `cpu` and `memory`; limit memory to the same, so a leak is killed, not spread.

    CPU is left unlimited: a run that finds a free core may use it.
    """
    resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    return {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": resources}})}


# Landing and the hourly aggregation do their work in PostgreSQL and stream the topic in
# batches of AGGREGATION_BATCH_SIZE; a quarter core and 512 MB is plenty.
LIGHT_RUN_TAGS = k8s_resources_tag(cpu="250m", memory="512Mi")
