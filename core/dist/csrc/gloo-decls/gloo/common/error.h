// Fallback declarations (see README.md): ProcessGroupGloo.hpp uses no gloo error type inline.
#pragma once
