import { BerthError, type Agent, type Project } from '@berth/client-sdk/protocol';
import type { Config } from '../config/index.js';
import type { Devcontainers } from '../images/devcontainer.js';
import type { ImageService } from '../images/service.js';
import type { ContainerRuntime } from '../runtime/port.js';

/**
 * Which image a session runs. A project whose devcontainer.json names a Dockerfile has that image
 * built the first time a session needs it, inside the start call (the call waits for the build;
 * `berth image build` does it ahead).
 */
export class ImageResolver {
  constructor(
    private readonly d: { config: Config; runtime: ContainerRuntime; images: ImageService; devcontainers: Devcontainers },
  ) {}

  /**
   * The image a session of `agent` on `project` runs: the project's pinned default, else the agent's,
   * else the project's devcontainer.json (built first when it names a Dockerfile), else
   * AGENT_DEFAULT_IMAGE. With `check`, a missing image fails now, naming the command that builds it.
   */
  async resolve(project: Project, agent: Agent, check = true): Promise<string> {
    let image = project.defaultImage ?? agent.image;
    let build: string | null = null;
    if (!image) {
      const dc = await this.d.devcontainers.read(project);
      if (dc?.kind === 'image') image = dc.image;
      else if (dc?.kind === 'build') {
        image = dc.tag;
        if (!(await this.d.runtime.image(dc.tag))) {
          await this.d.images.build({ name: dc.tag, dockerfile: dc.dockerfile, context: dc.context, buildArgs: dc.args });
        }
        build = dc.dockerfile;
      }
    }
    image ??= this.d.config.agentDefaultImage;
    if (check && !(await this.d.runtime.image(image))) {
      throw new BerthError('IMAGE_NOT_FOUND', `image ${image} is not on the engine`, {
        hint: `Build it: \`${await this.d.images.buildCommand(image, build)}\`, or point the agent (\`berth agent add --image\`) or the project (\`berth project update --default-image\`) at one the engine has.`,
        details: { image, project: project.name, agent: agent.name },
      });
    }
    return image;
  }
}
