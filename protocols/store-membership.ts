// /nameless-grid/store-membership: a store node tells the coordinator it exists and where it listens,
// and keeps the session open with heartbeats; when the session ends the store leaves the directory.
// Over the same session the store reports the roots it holds (a summary on joining, then each one held or
// dropped), its byte totals, and asks which old roots it may evict; the coordinator has it copy roots to other
// stores (repair) and drop copies it is no longer placed for.
import { z } from 'zod'
import { beatMessage, welcomeMessage } from '../net/session.ts'
import { listenAddrs, peerAddress, peerIdText } from '../net/dial.ts'
import { EVICTION_BATCH_ROOTS, MAX_ROOTS_PER_REPORT } from '../storage/constants.ts'
import { idSchema } from '../grid/ids.ts'
import { MAX_DENIED, MAX_FENCED_LOGS } from './constants.ts'

export const STORE_MEMBERSHIP_PROTOCOL = '/nameless-grid/store-membership/1.0.0'

/** A CIDv1 as the grid writes it (base32); parsed properly where it is used. */
const cidText = z.string().regex(/^b[a-z2-7]{20,120}$/)
const bytes = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)

export const toCoordinator = z.discriminatedUnion('t', [
  z.object({ t: z.literal('hello'), addrs: listenAddrs.min(1), maxBytes: bytes.optional() }),
  beatMessage,
  /** Roots the store holds whole (its summary on joining comes as several of these). */
  z.object({ t: z.literal('held'), roots: z.array(z.object({ cid: cidText, size: bytes, bytes })).max(MAX_ROOTS_PER_REPORT) }),
  /** Roots the store no longer holds; `evicted` if it let them go for room. */
  z.object({ t: z.literal('dropped'), roots: z.array(cidText).max(MAX_ROOTS_PER_REPORT), evicted: z.boolean() }),
  z.object({ t: z.literal('usage'), bytes, maxBytes: bytes.optional(), roots: bytes, received: bytes, served: bytes }),
  /** Which of these (oldest first) may I evict? */
  z.object({ t: z.literal('evict?'), id: z.number().int().min(0), roots: z.array(cidText).max(EVICTION_BATCH_ROOTS) }),
  /** The copy `id` asked for is done (or failed, with why). */
  z.object({ t: z.literal('copied'), id: z.number().int().min(0), error: z.string().max(1000).optional() })
])
export type StoreToCoordinator = z.infer<typeof toCoordinator>

export const toStore = z.discriminatedUnion('t', [
  /** These logs' attempts are over: seal them where they stand. */
  z.object({ t: z.literal('fence'), logs: z.array(idSchema).max(MAX_FENCED_LOGS) }),
  /** The grid's whole deny list: the store refuses and drops these peers. */
  z.object({ t: z.literal('denied'), peers: z.array(peerIdText).max(MAX_DENIED) }),
  welcomeMessage,
  beatMessage,
  /** The answer to `evict?`: these may go. */
  z.object({ t: z.literal('evict'), id: z.number().int().min(0), roots: z.array(cidText).max(EVICTION_BATCH_ROOTS) }),
  /** Repair: copy this root to that store, then answer `copied`. */
  z.object({ t: z.literal('copy'), id: z.number().int().min(0), root: cidText, to: peerAddress }),
  /** These roots are on their placed stores and no longer placed here: drop them. */
  z.object({ t: z.literal('drop'), roots: z.array(cidText).max(MAX_ROOTS_PER_REPORT) })
])
export type CoordinatorToStore = z.infer<typeof toStore>
