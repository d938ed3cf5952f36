/* Plan workspaces in device memory that can be created at any time, also while a stream of the calling
 * thread is being captured into a CUDA graph. The Python bindings create a plan on its first call, and
 * an engine may make that first call inside a capture: memory taken from the framework's allocator there
 * would belong to the graph's private pool, and its zeroing would be recorded instead of run.
 *
 * create: cudaMalloc under cudaStreamCaptureModeRelaxed (an allocation is not recorded into a graph),
 * then zeroed and waited for on a private non-blocking stream, so the memory is ready when create
 * returns. destroy: cudaFree (it synchronizes the device; never call it while a capture is running).
 * On failure `message` (if not NULL) receives a NUL-terminated explanation.
 */
#ifndef SMLA_DEVICE_WORKSPACE_H_
#define SMLA_DEVICE_WORKSPACE_H_

#include <stddef.h>
#include <stdint.h>

#include "smla/status_codes.h"

#ifdef __cplusplus
extern "C" {
#endif

smla_status_t smla_device_workspace_create(int32_t device, size_t bytes, void** workspace, char* message,
                                           size_t message_bytes);
smla_status_t smla_device_workspace_destroy(int32_t device, void* workspace, char* message,
                                            size_t message_bytes);

#ifdef __cplusplus
}
#endif

#endif /* SMLA_DEVICE_WORKSPACE_H_ */
