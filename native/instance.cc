#include "instance.h"

namespace spin {

InstanceData& Instance(Napi::Env env) { return *env.GetInstanceData<InstanceData>(); }

}  // namespace spin
