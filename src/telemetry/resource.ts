import { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { VERSION } from '../core/version.js';

/**
 * What every span and metric says about this process (SPEC §8), lowest precedence first: the
 * SDK's defaults (`telemetry.sdk.*`), the host and process detectors (`host.name`, `host.arch`,
 * `process.pid`, `process.runtime.*`, ...), gatehouse's own `service.name` and `service.version`,
 * then the environment detector (OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME over its
 * `service.name`), and the YAML's `telemetry.serviceName` above all. Build inside `withOtelEnv`.
 */
export function detectResource(serviceName: string | undefined): Resource {
  const detected = detectResources({ detectors: [hostDetector, processDetector] });
  const fromEnv = detectResources({ detectors: [envDetector] });
  return defaultResource()
    .merge(detected)
    .merge(resourceFromAttributes({ 'service.name': 'gatehouse', 'service.version': VERSION }))
    .merge(fromEnv)
    .merge(serviceName === undefined ? null : resourceFromAttributes({ 'service.name': serviceName }));
}

/** Waits (at most `limitMs`) for the detectors' asynchronous attributes (the host detector's `host.id`). */
export async function settleResource(resource: Resource, limitMs = 1000): Promise<void> {
  if (resource.asyncAttributesPending !== true) return;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, limitMs);
  });
  await Promise.race([resource.waitForAsyncAttributes?.(), limit]);
  clearTimeout(timer);
}
