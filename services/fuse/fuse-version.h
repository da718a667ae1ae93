/* The libfuse API level weir-fuse is written against; passthrough needs 3.17's. */
#pragma once

#include "weir-build.h"

#if HAVE_FUSE_PASSTHROUGH
#define FUSE_USE_VERSION 317
#else
#define FUSE_USE_VERSION 314
#endif

#include <fuse_lowlevel.h>
