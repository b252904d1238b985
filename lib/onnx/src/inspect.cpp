// placeholder, filled below
#include "qbench/onnx/model.h"
