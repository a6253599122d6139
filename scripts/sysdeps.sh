#!/usr/bin/env bash
# Make sure the two C libraries 21cmFAST compiles against are present: FFTW3 (single precision,
# with OpenMP) and GSL. Installs them with apt-get where that exists; otherwise stops with one
# line saying what to install and which variables 21cmFAST's build reads.
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

have_libs && exit 0
if [[ "${ASTROPS_SKIP_SYSDEPS:-0}" == "1" ]]; then exit 0; fi

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "astrops: libfftw3-dev and libgsl-dev are missing and you are not root and have no sudo: ask an administrator to 'apt-get install libfftw3-dev libgsl-dev', then rerun make." >&2
      exit 1
    fi
  fi
  echo "astrops: installing libfftw3-dev libgsl-dev with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libfftw3-dev libgsl-dev >/dev/null
  have_libs && exit 0
fi

echo "astrops: 21cmFAST needs the C libraries FFTW3 (single precision with OpenMP: fftw3f, fftw3f_omp) and GSL (gsl, gslcblas) with their headers, and they could not be found or installed (no apt-get): install them (e.g. 'conda install -c conda-forge fftw gsl' or your module system), export FFTW_INC/FFTW_LIB and GSL_INC/GSL_LIB (21cmFAST's build reads every variable whose name contains INC or LIB) and CC=gcc, then rerun make (ASTROPS_SKIP_SYSDEPS=1 skips this check)." >&2
exit 1
