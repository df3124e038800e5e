#!/bin/sh
# Installs the runner into a fresh virtual environment, from the pins in requirements/.
# The one place the install steps live: both images run it, CI runs the cpu variant in a fresh
# venv, and the Makefile's environments follow the same steps (cpu = .venv/, cuda = .venv-comfyui/).
#
#   docker/install.sh cpu  [VENV [dev]]   the runner, CPU torch (requirements/constraints.txt)
#   docker/install.sh cuda [VENV [dev]]   the runner + real ComfyUI and CUDA torch
#                                         (requirements/comfyui.txt, comfyui-lock.txt)
#
# VENV defaults to /opt/venv. `dev` installs the checkout editable, with the test tools for cpu:
# what the Makefile's .venv/ (cpu) and .venv-comfyui/ (cuda) hold. Environment:
#   PYTHON           interpreter that creates the venv (default python3, >= 3.11)
#   TORCH_INDEX_URL  cpu only: where the CPU build of torch comes from
#                    (default https://download.pytorch.org/whl/cpu; empty: pip's configured indexes)
#   PIP_FLAGS        extra pip flags (default: -q --disable-pip-version-check --no-cache-dir)
set -eu

variant=${1:-}
venv=${2:-/opt/venv}
mode=${3:-}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
pip_flags=${PIP_FLAGS:--q --disable-pip-version-check --no-cache-dir}
torch_index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}

case "$variant:$mode" in
  cpu: | cuda: | cpu:dev | cuda:dev) ;;
  *)
    echo "usage: $0 cpu|cuda [VENV [dev]]" >&2
    exit 2
    ;;
esac

# The runner itself, from the checkout (editable in dev mode, with $runner_extras); the
# arguments are extra pip options.
install_runner() {
  if [ "$mode" = dev ]; then
    # shellcheck disable=SC2086
    "$pip" install $pip_flags "$@" -e "$here$runner_extras"
  else
    # shellcheck disable=SC2086
    "$pip" install $pip_flags "$@" "$here"
  fi
}

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 needed")'
"$python" -m venv "$venv"
pip="$venv/bin/pip"
# shellcheck disable=SC2086  # pip_flags holds several flags on purpose
"$pip" install $pip_flags --upgrade "pip>=24"

if [ "$variant" = cpu ]; then
  torch_pin=$(grep -E '^torch==' "$here/requirements/constraints.txt")
  if [ -n "$torch_index" ]; then
    # shellcheck disable=SC2086
    "$pip" install $pip_flags --extra-index-url "$torch_index" \
      -c "$here/requirements/constraints.txt" "$torch_pin"
  else
    # shellcheck disable=SC2086
    "$pip" install $pip_flags -c "$here/requirements/constraints.txt" "$torch_pin"
  fi
  runner_extras="[test]"
  install_runner -c "$here/requirements/constraints.txt"
else
  # shellcheck disable=SC2086
  "$pip" install $pip_flags -r "$here/requirements/comfyui.txt" \
    -c "$here/requirements/comfyui-lock.txt"
  # With its dependencies, under the same lock: anything the runner needs that ComfyUI does not
  # bring is installed (and pinned when the lock lists it).
  runner_extras=""
  install_runner -c "$here/requirements/comfyui-lock.txt"
fi

# What was installed must import and start: the entry point, the workers' packages and torch.
"$venv/bin/comfystream-byoc" --version
"$venv/bin/python" -c 'import byoc.serve, ingest.worker, infer.worker, egress.worker, ipc.ring, torch; print("torch", torch.__version__)'
if [ "$variant" = cuda ]; then
  "$venv/bin/python" -c 'import comfy; print("comfyui importable")'
fi
