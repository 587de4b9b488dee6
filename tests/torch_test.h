// Include this (not catch.hpp directly) in tests that use torch: c10's logging header defines
// a glog-style CHECK macro that would silently replace Catch2's CHECK (aborting the whole run
// on the first failure instead of reporting it). Torch first, then CHECK handed back to Catch.
#pragma once

#include <torch/torch.h>

#undef CHECK
#include <catch2/catch.hpp>
