// Fallback declarations (see README.md): ProcessGroupGloo.hpp includes this header but uses
// nothing from it in its declarations.
#pragma once
#include "gloo/context.h"
