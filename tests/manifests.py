"""Small, realistic manifests for restore tests, as YAML text."""

from __future__ import annotations


def configmap(name: str, **data: str) -> str:
    lines = "".join(f"  {k}: {v!r}\n" for k, v in data.items()) or "  {}\n"
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def deployment(name: str, replicas: int = 2, image: str = "nginx:1.27",
               app_label: str | None = None) -> str:
    label = app_label or name
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {label}}}
  template:
    metadata:
      labels: {{app: {label}}}
    spec:
      containers:
        - name: {name}
          image: {image}
"""


def service(name: str, port: int = 80) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
    - port: {port}
"""


def pvc(name: str) -> str:
    return f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"""


def crd(group: str = "example.gitops-restore.io", kind: str = "Widget",
        plural: str = "widgets") -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {kind.lower()}, listKind: {kind}List}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
"""


def widget(name: str, size: int, group: str = "example.gitops-restore.io") -> str:
    return f"""apiVersion: {group}/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
"""
