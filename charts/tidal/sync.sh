#!/bin/sh
# Copies into the chart what it shares with the kustomize install: the CRD (manifests/crd),
# the alert rules (manifests/rules) and the dashboards (dashboards/). A chart cannot read files
# outside its directory, so they are copies; tests/tests/helm.rs fails while they differ.
set -eu
cd "$(dirname "$0")"
cp ../../manifests/crd/scalingpolicy.yaml crds/scalingpolicy.yaml
cp ../../manifests/rules/tidal-agent.rules.yaml ../../manifests/rules/tidal-scaler.rules.yaml \
  ../../manifests/rules/tidal-recording.rules.yaml files/rules/
rm -f files/dashboards/*.json
cp ../../dashboards/*.json files/dashboards/
