/**
 * Purge for the admin API (SPEC §8 `POST /admin/cache/purge`): by path prefix
 * (whole segments, as routes match: /api/users purges /api/users and
 * /api/users/7?x=1, not /api/usersx; "/" purges everything) and/or by tags
 * taken from the upstream's Surrogate-Key (space-separated) or Cache-Tag
 * (comma-separated) response headers. With Redis the purge reaches every
 * instance sharing it; the local fallback copy (onError: local) is purged too.
 */
import type { Generation } from "../generation.js";
import { storeOf } from "../store/index.js";
import { KEY_NAMESPACE, pathOfKey, underPrefix } from "./key.js";

export interface PurgeRequest {
  prefix?: string;
  tags?: readonly string[];
}

export interface PurgeResult {
  /** Stored responses deleted (variants count one each). */
  purged: number;
}

export async function purgeCache(generation: Generation, req: PurgeRequest): Promise<PurgeResult> {
  const store = storeOf(generation);
  if (store === undefined) return { purged: 0 };
  let purged = 0;
  if (req.prefix !== undefined) {
    const prefix = req.prefix;
    // The scan prefix is the path prefix as text; whole segments are checked per key.
    purged += await store.purgePrefix(KEY_NAMESPACE + prefix, (key) => underPrefix(pathOfKey(key), prefix));
  }
  if (req.tags !== undefined && req.tags.length > 0) purged += await store.purgeTags(req.tags);
  return { purged };
}
