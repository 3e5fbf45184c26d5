/**
 * Which images worker pods may run. A tag (`:0.1.0`, `:latest`) names whatever was pushed
 * under it last: two pods of one gang can run different code, a retried attempt other
 * code than its first, and whoever can push to the registry can change what runs. A
 * digest (`name@sha256:...`) names one image. With STOKER_K8S_REQUIRE_IMAGE_DIGESTS=true
 * (the production overlay sets it) the controller runs only images pinned by digest:
 *
 *   - its own worker image (STOKER_K8S_WORKER_IMAGE): refused at start (settings.ts)
 *   - a stage's `image`: refused at its field before the run starts (imageDigestRule, in
 *     the backend's checkSpec), and by the object builders (`stoker render` with the
 *     production settings refuses too)
 */
import type { SpecRule } from '../../../common/spec/rules.js';

const DIGEST = /@sha256:[0-9a-f]{64}$/;

/** `registry/name@sha256:<64 hex>`, with or without a tag before the digest. */
export const isPinnedImage = (image: string): boolean => DIGEST.test(image);

/** Why `image` may not run under a digest requirement (null: it may). */
export function unpinnedImage(image: string): string | null {
  if (isPinnedImage(image)) return null;
  const what = image.includes('@')
    ? 'has a digest that is not sha256:<64 hex digits>'
    : /:latest$/.test(image)
      ? 'is a :latest tag'
      : /:[^/:]+$/.test(image)
        ? 'is a tag'
        : 'has no tag or digest';
  return `image "${image}" ${what}: this controller runs only images pinned by digest (name@sha256:..., STOKER_K8S_REQUIRE_IMAGE_DIGESTS)`;
}

/** Each stage's own `image` must be pinned (a stage without one runs the worker image). */
export const imageDigestRule: SpecRule = (spec, paths) =>
  spec.stages.flatMap((stage, i) => {
    const why = stage.image === undefined ? null : unpinnedImage(stage.image);
    return why ? [{ path: paths.setting(i, ['image']).path, message: why }] : [];
  });
