/* Status codes shared by the C and C++ APIs. Plain C: no CUDA headers needed. */
#ifndef SMLA_STATUS_CODES_H_
#define SMLA_STATUS_CODES_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef enum smla_status_t {
  SMLA_STATUS_OK = 0,
  /* An argument is wrong: the message names it and says what was expected. */
  SMLA_STATUS_INVALID_ARGUMENT = 1,
  /* The request is valid but this backend or device cannot serve it. */
  SMLA_STATUS_UNSUPPORTED = 2,
  /* A CUDA backend was asked for and no usable CUDA device exists. */
  SMLA_STATUS_NO_DEVICE = 3,
  /* A CUDA runtime call or kernel launch failed; the message has the CUDA error string. */
  SMLA_STATUS_CUDA_ERROR = 4,
  /* The device-side checks (error counter or SMLA_DEBUG_CHECKS) found bad indices or lengths. */
  SMLA_STATUS_DEVICE_CHECK_FAILED = 5,
  /* A bug in smla. */
  SMLA_STATUS_INTERNAL = 6
} smla_status_t;

#ifdef __cplusplus
}
#endif

#endif /* SMLA_STATUS_CODES_H_ */
