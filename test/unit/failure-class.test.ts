/** common/failure-class.ts: real failure lines of PyTorch, NCCL, CUDA, the OS and the HF hub. */
import { describe, expect, it } from 'vitest';
import { classifyFailure } from '../../common/failure-class.js';

const CASES: Array<[string, string]> = [
  [
    'NCCL_TIMEOUT',
    '[rank1]:[E ProcessGroupNCCL.cpp:563] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600031 milliseconds before timing out.',
  ],
  [
    'NCCL_ERROR',
    'torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.19.3',
  ],
  [
    'NCCL_ERROR',
    'ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.',
  ],
  [
    'CUDA_OOM',
    'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.02 GiB is free.',
  ],
  ['CUDA_ILLEGAL_ADDRESS', 'RuntimeError: CUDA error: an illegal memory access was encountered'],
  ['CUDA_ECC', 'RuntimeError: CUDA error: uncorrectable ECC error encountered'],
  ['CUDA_DEVICE_ASSERT', 'RuntimeError: CUDA error: device-side assert triggered'],
  [
    'CUDA_ERROR',
    'RuntimeError: CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle)`',
  ],
  ['MISSING_MODULE', "ModuleNotFoundError: No module named 'flash_attn'"],
  ['MISSING_MODULE', "[rank0]: ModuleNotFoundError: No module named 'deepspeed.ops'"],
  ['DISK_FULL', 'OSError: [Errno 28] No space left on device'],
  ['PERMISSION_DENIED', "PermissionError: [Errno 13] Permission denied: '/models/llava'"],
  [
    'OFFLINE_NOT_FOUND',
    "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the disk cache and outgoing traffic has been disabled. To enable hf.co look-ups and downloads online, set 'local_files_only' to False.",
  ],
  [
    'OFFLINE_NOT_FOUND',
    "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in the cached files.",
  ],
  ['NOT_FOUND', "FileNotFoundError: [Errno 2] No such file or directory: 'data/train.jsonl'"],
];

describe('classifyFailure', () => {
  it.each(CASES)('%s from %s', (cls, line) => {
    const got = classifyFailure([
      'Traceback (most recent call last):',
      '  File "train.py", line 9',
      line,
    ]);
    expect(got).toMatchObject({ class: cls, evidence: line.slice(0, 300).trim() });
    expect(got?.hint.length).toBeGreaterThan(10);
  });

  it('prefers the most specific class whatever the order of the lines', () => {
    const lines = [
      "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/x'",
      'RuntimeError: CUDA error: device-side assert triggered',
    ];
    expect(classifyFailure(lines)?.class).toBe('CUDA_DEVICE_ASSERT');
  });

  it('says nothing about output it does not know, and cuts long evidence', () => {
    expect(classifyFailure(['ValueError: bad value', 'noise'])).toBeNull();
    // a library's note about an optional module is no failure of the payload
    expect(classifyFailure(["WARNING: No module named 'triton'; kernels disabled"])).toBeNull();
    expect(classifyFailure([])).toBeNull();
    const long = `OSError: No space left on device ${'x'.repeat(1000)}`;
    expect(classifyFailure([long])?.evidence).toHaveLength(300);
  });
});
