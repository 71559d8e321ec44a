// See buffer_pool.h.
#include "buffer_pool.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>

namespace keisei_fused_se {

BufferPool& BufferPool::instance() {
  static BufferPool* pool = new BufferPool();  // leaked on purpose (see the header)
  return *pool;
}

c10::DataPtr BufferPool::allocate(size_t nbytes) {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (nbytes < kMinPooledBytes) {
    return c10::GetCPUAllocator()->allocate(nbytes);
  }
  Block* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Exact sizes only: the op is called with the same shapes over and over, and an exact
    // match never hands a large block to a small tensor.
    const auto found = std::find_if(idle_.begin(), idle_.end(),
                                    [&](const Block* idle) { return idle->size == nbytes; });
    if (found != idle_.end()) {
      block = *found;
      idle_.erase(found);
      idle_bytes_ -= nbytes;
      ++hits_;
    } else {
      ++misses_;
    }
  }
  if (block == nullptr) {
    void* data = nullptr;
    try {
      data = c10::alloc_cpu(nbytes);
    } catch (const c10::Error&) {
      // Out of memory with idle blocks held: give them back and try once more.
      if (release_idle() == 0) {
        throw;
      }
      data = c10::alloc_cpu(nbytes);
    }
    block = new Block{data, nbytes};
  }
  return {block->data, block, &BufferPool::return_block, cpu};
}

void BufferPool::copy_data(void* dest, const void* src, std::size_t count) const {
  default_copy_data(dest, src, count);
}

void BufferPool::return_block(void* block) { instance().take_back(static_cast<Block*>(block)); }

void BufferPool::take_back(Block* block) {
  std::list<Block*> to_free;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (block->size > limit_bytes_) {
      to_free.push_back(block);
    } else {
      to_free = evict_locked(limit_bytes_ - block->size);
      idle_.push_front(block);
      idle_bytes_ += block->size;
    }
  }
  free_blocks(to_free);
}

std::list<BufferPool::Block*> BufferPool::evict_locked(size_t keep) {
  std::list<Block*> evicted;
  while (idle_bytes_ > keep && !idle_.empty()) {
    Block* oldest = idle_.back();
    idle_.pop_back();
    idle_bytes_ -= oldest->size;
    evicted.push_back(oldest);
  }
  return evicted;
}

void BufferPool::free_blocks(std::list<Block*>& blocks) {
  for (Block* block : blocks) {
    c10::free_cpu(block->data);
    delete block;
  }
  blocks.clear();
}

BufferPoolStats BufferPool::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return {hits_, misses_, static_cast<int64_t>(idle_bytes_), static_cast<int64_t>(idle_.size()),
          static_cast<int64_t>(limit_bytes_)};
}

void BufferPool::set_limit_bytes(int64_t limit) {
  TORCH_CHECK(limit >= 0, "keisei_fused_se: the buffer pool limit must be >= 0 bytes, got ", limit);
  std::list<Block*> to_free;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_bytes_ = static_cast<size_t>(limit);
    to_free = evict_locked(limit_bytes_);
  }
  free_blocks(to_free);
}

int64_t BufferPool::release_idle() {
  std::list<Block*> to_free;
  size_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    freed = idle_bytes_;
    to_free = evict_locked(0);
  }
  free_blocks(to_free);
  return static_cast<int64_t>(freed);
}

}  // namespace keisei_fused_se
