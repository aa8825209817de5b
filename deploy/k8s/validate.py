#!/usr/bin/python3
"""Checks deploy/k8s/tally.yaml offline (no cluster to apply it to here).

Parses every document and checks what the deployment relies on: the
headless Service the StatefulSet names, three replicas whose stable names
match --initial-cluster, a volume claim per pod, probes, and a disruption
budget that keeps a quorum. Exit 0 when all hold; each failure is printed.
"""
import re
import sys

import yaml

path = sys.argv[1] if len(sys.argv) > 1 else "deploy/k8s/tally.yaml"
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]

by_kind = {}
for d in docs:
    for field in ("apiVersion", "kind", "metadata"):
        check(field in d, f"a document lacks {field}")
    check("name" in d.get("metadata", {}), f"a {d.get('kind')} has no name")
    by_kind.setdefault(d.get("kind"), []).append(d)

sts = (by_kind.get("StatefulSet") or [None])[0]
check(sts is not None, "no StatefulSet")
if sts:
    spec = sts["spec"]
    replicas = spec.get("replicas")
    check(replicas == 3, f"replicas is {replicas}, want 3")
    labels = spec["template"]["metadata"]["labels"]
    check(spec["selector"]["matchLabels"] == labels,
          "the selector does not match the pod labels")
    headless = [s for s in by_kind.get("Service", [])
                if s["metadata"]["name"] == spec.get("serviceName")]
    check(len(headless) == 1, "serviceName names no Service")
    if headless:
        check(headless[0]["spec"].get("clusterIP") == "None",
              "the StatefulSet's Service is not headless")
    check(spec.get("volumeClaimTemplates"), "no volumeClaimTemplates")
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    container = spec["template"]["spec"]["containers"][0]
    mounts = {m["name"] for m in container.get("volumeMounts", [])}
    check(claims <= mounts, "a volume claim is not mounted")
    check("readinessProbe" in container, "no readiness probe")
    args = " ".join(container.get("args", []))
    names = re.findall(r"n(\d+)=([\w.-]+):", args)
    check(len(names) == replicas,
          f"--initial-cluster names {len(names)} members for {replicas} pods")
    for member, host in names:
        want = f"{sts['metadata']['name']}-{int(member) - 1}.{spec['serviceName']}"
        check(host == want, f"n{member} is at {host}, want {want}")

pdb = (by_kind.get("PodDisruptionBudget") or [None])[0]
check(pdb is not None, "no PodDisruptionBudget")
if pdb and sts:
    check(pdb["spec"].get("minAvailable") == sts["spec"]["replicas"] // 2 + 1,
          "the disruption budget does not keep a quorum")
    check(pdb["spec"]["selector"]["matchLabels"] ==
          sts["spec"]["template"]["metadata"]["labels"],
          "the disruption budget selects other pods")

for e in errors:
    print(f"validate: {e}")
print(f"validate: {path}: {len(docs)} documents, "
      f"{'OK' if not errors else f'{len(errors)} problems'}")
sys.exit(1 if errors else 0)
