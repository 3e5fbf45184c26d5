/**
 * What a failed attempt's output says went wrong, beyond its exit code: the first line
 * of its stderr tail that matches a known failure, as a class a user can act on, the
 * line itself as evidence, and a hint. The exit code says whether to retry
 * (exit-codes.ts); this says why it failed, for `stoker status`, the API and the
 * dashboard.
 *
 * Classes, most specific first (the first rule that matches any line wins):
 *   NCCL_TIMEOUT        a collective timed out (the NCCL watchdog): a rank hung or died
 *   NCCL_ERROR          NCCL failed (communicator aborted, system or internal error)
 *   CUDA_OOM            CUDA out of memory
 *   CUDA_ILLEGAL_ADDRESS an illegal memory access on the device
 *   CUDA_ECC            an uncorrectable ECC error: a faulty GPU
 *   CUDA_DEVICE_ASSERT  a device-side assert (often an index out of range: labels, vocab)
 *   CUDA_ERROR          another CUDA, cuBLAS or cuDNN error
 *   MISSING_MODULE      a Python module that is not installed (ModuleNotFoundError)
 *   DISK_FULL           no space left on a device (ENOSPC)
 *   PERMISSION_DENIED   a file or directory that the payload may not read or write
 *   OFFLINE_NOT_FOUND   a model or dataset not in the local cache with the hub offline
 *   NOT_FOUND           a file that does not exist
 */

export type FailureClassName =
  | 'NCCL_TIMEOUT'
  | 'NCCL_ERROR'
  | 'CUDA_OOM'
  | 'CUDA_ILLEGAL_ADDRESS'
  | 'CUDA_ECC'
  | 'CUDA_DEVICE_ASSERT'
  | 'CUDA_ERROR'
  | 'MISSING_MODULE'
  | 'DISK_FULL'
  | 'PERMISSION_DENIED'
  | 'OFFLINE_NOT_FOUND'
  | 'NOT_FOUND';

export interface FailureClass {
  class: FailureClassName;
  /** The line of output that says so (at most MAX_EVIDENCE characters). */
  evidence: string;
  hint: string;
}

const MAX_EVIDENCE = 300;

const RULES: ReadonlyArray<{ class: FailureClassName; re: RegExp; hint: string }> = [
  {
    class: 'NCCL_TIMEOUT',
    re: /Watchdog caught collective operation timeout|NCCL[^\n]*\btimed? ?out\b|ProcessGroupNCCL[^\n]*Timeout/i,
    hint: "a collective timed out: one rank hung or died first; read the other ranks' logs",
  },
  {
    class: 'NCCL_ERROR',
    re: /\bnccl(Internal|System|UnhandledCuda|InvalidUsage|Remote)Error\b|NCCL error|NCCL communicator was aborted/i,
    hint: 'NCCL failed: check the network between nodes (NCCL_DEBUG=INFO) and that every rank started',
  },
  {
    class: 'CUDA_OOM',
    re: /CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError/i,
    hint: 'the GPU ran out of memory: lower the batch size or sequence length',
  },
  {
    class: 'CUDA_ILLEGAL_ADDRESS',
    re: /an illegal memory access was encountered|cudaErrorIllegalAddress/i,
    hint: 'an illegal memory access on the GPU: a kernel bug or a faulty device; retry on another node',
  },
  {
    class: 'CUDA_ECC',
    re: /uncorrectable ECC error|cudaErrorECCUncorrectable/i,
    hint: 'an uncorrectable ECC error: the GPU is faulty; drain that node',
  },
  {
    class: 'CUDA_DEVICE_ASSERT',
    re: /device-side assert triggered/i,
    hint: 'a device-side assert: often an index out of range (labels, vocabulary); rerun with CUDA_LAUNCH_BLOCKING=1',
  },
  {
    class: 'CUDA_ERROR',
    re: /CUDA error:|\bcudaError\w+|CUBLAS_STATUS_\w+|CUDNN_STATUS_\w+/,
    hint: 'a CUDA library error',
  },
  {
    class: 'MISSING_MODULE',
    re: /\bModuleNotFoundError: No module named ['"][\w.]+['"]/,
    hint: "a Python module is not installed where the payload runs: add it to the image (or the payload's environment)",
  },
  {
    class: 'DISK_FULL',
    re: /No space left on device|\bENOSPC\b/i,
    hint: 'a disk is full: free space on the output or cache volume',
  },
  {
    class: 'PERMISSION_DENIED',
    re: /Permission denied|\bEACCES\b|PermissionError/,
    hint: "the payload may not read or write a path: check owners and the pod's user",
  },
  {
    class: 'OFFLINE_NOT_FOUND',
    re: /LocalEntryNotFoundError|offline mode is enabled|Cannot find the requested files in the (disk )?cache|couldn't connect to 'https:\/\/huggingface\.co'/i,
    hint: 'a model or dataset is not in the local cache and the hub is offline: stage it first',
  },
  {
    class: 'NOT_FOUND',
    re: /FileNotFoundError|No such file or directory|\bENOENT\b/,
    hint: "a file does not exist: check the spec's paths",
  },
];

/** The failure class of an attempt's output, or null when no known failure shows. */
export function classifyFailure(lines: readonly string[]): FailureClass | null {
  for (const rule of RULES) {
    const line = lines.find((l) => rule.re.test(l));
    if (line !== undefined) {
      const t = line.trim();
      return {
        class: rule.class,
        evidence: t.length > MAX_EVIDENCE ? `${t.slice(0, MAX_EVIDENCE - 3)}...` : t,
        hint: rule.hint,
      };
    }
  }
  return null;
}
