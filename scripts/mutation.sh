#!/usr/bin/env bash
# Mutation testing of the modules that produce numbers, with mutmut (settings: [tool.mutmut]
# in pyproject.toml). Run from an environment where `pip install -e '.[dev,mutation]'` was done:
#   bash scripts/mutation.sh                     # every mutant (many hours: see README)
#   bash scripts/mutation.sh 'mlplab.sweeps.*'   # only some
# mutmut runs the tests against a mutated copy of src/ in mutants/. Python must import that
# copy, not the editable install, so the tests run in a second environment that reuses this
# one's packages but does not install mlplab.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
python -m venv --without-pip .venv-mutation
mutation_packages=$(.venv-mutation/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$packages" > "$mutation_packages/packages-of-the-dev-environment.pth"

# mutmut copies src/ into mutants/src/ after Python has first looked into that folder; a copy
# made beforehand lets Python find the package there on the first run too.
mkdir -p mutants/src
cp -rp src/mlplab src/hydra_plugins mutants/src/

export DATA_DIR="${DATA_DIR:-$PWD/data}"
.venv-mutation/bin/python -m mutmut run --max-children "$(nproc)" "$@"
.venv-mutation/bin/python -m mutmut results
