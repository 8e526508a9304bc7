// Small pieces every bench phase uses: a bounded wait, percentiles.

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** `work`, or a failure naming `what` after `timeoutMs`: a phase fails rather than hang the bench. */
export async function within<T> (what: string, work: () => Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`bench phase timed out: ${what}`)), timeoutMs) })])
  } finally {
    clearTimeout(timer)
  }
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]
}
