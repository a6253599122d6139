#!/usr/bin/env bash
# Make sure the two C libraries 21cmFAST compiles against are present: FFTW3 (single precision,
# with OpenMP) and GSL, and Debian's chromium, the browser tests/test_mlflow_ui.py and
# `make screenshots` drive through Playwright (executable_path: Playwright's own browser download is
# never used). Installs what is missing with apt-get where that exists; otherwise stops with one
# line saying what to install (and, for the libraries, which variables 21cmFAST's build reads).
set -euo pipefail

flags=()
# 21cmFAST's build adds every env variable with "inc" in its name to the include path and every one
# with "lib" in its name to the library path: honour the same variables in this check.
while IFS='=' read -r name value; do
  lname=$(echo "$name" | tr '[:upper:]' '[:lower:]')
  [[ -d "$value" ]] || continue
  if [[ "$lname" == *inc* ]]; then flags+=("-I$value"); elif [[ "$lname" == *lib* ]]; then flags+=("-L$value"); fi
done < <(env)

have_libs() {
  printf '#include <fftw3.h>\n#include <gsl/gsl_rng.h>\nint main(void){return 0;}\n' |
    ${CC:-cc} -x c - "${flags[@]}" -lfftw3f_omp -lfftw3f -lgsl -lgslcblas -lm -o /dev/null >/dev/null 2>&1
}

have_chromium() {
  command -v chromium >/dev/null 2>&1
}

missing=()
have_libs || missing+=(libfftw3-dev libgsl-dev)
have_chromium || missing+=(chromium)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "${ASTROPS_SKIP_SYSDEPS:-0}" == "1" ]]; then exit 0; fi

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "astrops: ${missing[*]} are missing and you are not root and have no sudo: ask an administrator to 'apt-get install ${missing[*]}', then rerun make." >&2
      exit 1
    fi
  fi
  echo "astrops: installing ${missing[*]} with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  have_libs && have_chromium && exit 0
fi

if have_libs; then
  echo "astrops: the MLflow UI test (tests/test_mlflow_ui.py) and 'make screenshots' need Chromium as 'chromium' on PATH, and it could not be found or installed (no apt-get): install it (Debian: 'apt-get install chromium'), then rerun make (ASTROPS_SKIP_SYSDEPS=1 skips this check)." >&2
  exit 1
fi
echo "astrops: 21cmFAST needs the C libraries FFTW3 (single precision with OpenMP: fftw3f, fftw3f_omp) and GSL (gsl, gslcblas) with their headers, and they could not be found or installed (no apt-get): install them (e.g. 'conda install -c conda-forge fftw gsl' or your module system), export FFTW_INC/FFTW_LIB and GSL_INC/GSL_LIB (21cmFAST's build reads every variable whose name contains INC or LIB) and CC=gcc, then rerun make (ASTROPS_SKIP_SYSDEPS=1 skips this check)." >&2
exit 1
