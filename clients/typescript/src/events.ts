/** A small typed event emitter: listeners by event name, errors in one never reach another. */

export type Listener<T> = (payload: T) => void;

export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Call `listener` for every `event`; returns a function that stops it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let listeners = this.#listeners.get(event);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(event, listeners);
    }
    listeners.add(listener as Listener<never>);
    return () => listeners.delete(listener as Listener<never>);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (error) {
        // A broken listener must not stop the sync nor the other listeners.
        console.error("touchline: an event listener failed", error);
      }
    }
  }
}
