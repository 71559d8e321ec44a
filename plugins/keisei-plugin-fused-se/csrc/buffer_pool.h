// A small caching allocator for the fused SE op's large CPU outputs (the forward's output,
// the backward's two activation gradients).
//
// Why: a fresh multi-megabyte tensor from glibc is often fresh memory from the kernel,
// and every 4 KiB page of it faults on first write. On the development VM that cost
// about 3 us a page: the 1,350 faults of one batch-64 output (5.3 MB) took longer than
// the fused kernel itself, and whether they happen depends on glibc's trim and mmap
// thresholds, not on the op. The pool keeps released buffers and hands them back to the
// next request of the same size, so a loop of same-shaped calls touches warm pages.
//
// How: outputs are allocated through BufferPool (a c10::Allocator), so their DataPtr's
// deleter returns the block to the pool when the last tensor using it dies. The pool
// holds no reference to memory in use: storage use counts, autograd's in-place gradient
// accumulation, share_memory_() and resize_() behave as with torch's own allocator. Only
// idle blocks are kept, at most limit_bytes of them (oldest freed first); the rest of
// torch's CPU memory is untouched.
#pragma once

#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>

namespace keisei_fused_se {

struct BufferPoolStats {
  int64_t hits;         // requests served by an idle block
  int64_t misses;       // requests that allocated fresh memory
  int64_t idle_bytes;   // memory held for reuse now
  int64_t idle_blocks;  // blocks held for reuse now
  int64_t limit_bytes;  // most idle memory the pool keeps
};

class BufferPool final : public c10::Allocator {
 public:
  // Requests below this size go to torch's CPU allocator: glibc serves them from its
  // heap, which already reuses freed memory without faulting.
  static constexpr size_t kMinPooledBytes = size_t{1} << 20;
  static constexpr size_t kDefaultLimitBytes = size_t{256} << 20;

  // The process's pool. Never destroyed, so a tensor that outlives static destruction
  // can still hand its block back.
  static BufferPool& instance();

  c10::DataPtr allocate(size_t nbytes) override;
  void copy_data(void* dest, const void* src, std::size_t count) const override;

  BufferPoolStats stats();
  // Sets the idle-memory limit and frees idle blocks beyond it; 0 keeps nothing.
  void set_limit_bytes(int64_t limit);
  // Frees every idle block; returns the bytes freed.
  int64_t release_idle();

 private:
  struct Block {
    void* data;
    size_t size;
  };

  BufferPool() = default;
  static void return_block(void* block);
  void take_back(Block* block);
  // Frees idle blocks, oldest first, until at most `keep` bytes are idle. Call with
  // mutex_ held; returns the blocks to free once it is released.
  std::list<Block*> evict_locked(size_t keep);
  static void free_blocks(std::list<Block*>& blocks);

  std::mutex mutex_;
  std::list<Block*> idle_;  // most recently released first
  size_t idle_bytes_ = 0;
  size_t limit_bytes_ = kDefaultLimitBytes;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace keisei_fused_se
